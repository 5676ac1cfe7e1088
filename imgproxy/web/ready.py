"""Readiness (``/readyz``): may this process take traffic? ``/healthz`` stays liveness.

Ready means each of these answers, within :data:`TIMEOUT` seconds:

- ``originals``: a store-specific ``check()`` where there is one (a local
  folder exists and can be read), then a read of an id that should not exist
  (not found is an answer; an unreachable S3 or origin is not); with uploads
  on, also a store-specific ``check_writes()`` (a local folder that is
  read-only or full cannot store one);
- ``variants``: the same read of a variant key, and, after a write failed (a local
  folder read-only, full, no permission), a probe write that succeeds again;
- ``render``: a worker renders a tiny image (:meth:`Services.check_render`;
  every worker busy counts as able).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..errors import ImgproxyError, NotFound
from ..stores import Checked, WriteChecked
from ..variants.services import Services

TIMEOUT = 5.0
#: An id and a variant key no one stores (segments may start with a dot; ids never do in practice).
PROBE_ID = ".readyz/probe"


async def problems(services: Services) -> dict[str, str]:
    """What keeps this process from being ready, by check; empty when ready."""
    found: dict[str, str] = {}
    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        "originals": lambda: _originals(services.originals, uploads=bool(services.settings.ingest_tokens)),
        "variants": lambda: _variants(services.store),
        "render": services.check_render,
    }
    for name, check in checks.items():
        try:
            with anyio.fail_after(TIMEOUT):
                await check()
        except TimeoutError:
            found[name] = f"no answer within {TIMEOUT:g}s"
        except (ImgproxyError, OSError) as exc:
            found[name] = str(exc) or type(exc).__name__
    return found


async def _originals(store: Any, uploads: bool) -> None:
    if isinstance(store, Checked):
        await store.check()
    if uploads and isinstance(store, WriteChecked):
        await store.check_writes()
    try:
        (await store.fetch(PROBE_ID)).close()
    except NotFound:
        pass


async def _variants(store: Any) -> None:
    if isinstance(store, Checked):
        await store.check()
    await store.get(f"{PROBE_ID}.png")
    if isinstance(store, WriteChecked):
        await store.check_writes()
