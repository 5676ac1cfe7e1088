"""``imgproxy doctor``: is this installation able to serve? Exits 1 on a problem.

Checks, in order, each printed as ``ok``, ``warn`` or ``FAIL``:

1. settings and presets load (a bad one is exit 2, as for ``serve``);
2. signing keys: configured, or the development key (a warning);
3. the originals store answers a read (:mod:`.web.ready`'s probe);
4. the variant store answers a read and takes a write: a probe object is
   written under ``.doctor/``, read back and deleted;
5. a render worker renders;
6. every input format decodes and every output format encodes, tried on
   tiny images in a subprocess (:mod:`.render.capabilities`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field

from ..config import Settings
from ..errors import ImgproxyError
from ..formats import OUTPUTS
from ..keys import resolve_keys
from ..presets import load_presets
from ..stores import Blob, VariantStore
from ..variants.services import open_services
from ..web import ready

CAPABILITIES_TIMEOUT = 120


@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, level: str, what: str, detail: str) -> None:
        self.lines.append((level, what, detail))
        print(f"{level:4}  {what:22} {detail}", flush=True)

    @property
    def failed(self) -> bool:
        return any(level == "FAIL" for level, _, _ in self.lines)


def doctor(settings: Settings) -> int:
    report = Report()
    presets = load_presets(settings.presets)
    report.add("ok", "settings", f"env {settings.env}, {len(presets)} presets, render mode {settings.render_mode}")
    _keys(settings, report)
    asyncio.run(_stores(settings, report))
    _formats(report)
    print("problems found" if report.failed else "no problems found")
    return 1 if report.failed else 0


def _keys(settings: Settings, report: Report) -> None:
    if not settings.keys:
        resolve_keys(settings)
        report.add("warn", "keys", f"none configured: the development key in {settings.dev_key_file} signs")
        return
    short = sum(len(key) < 32 for key in settings.keys)
    detail = f"{len(settings.keys)} configured; the first signs"
    report.add("warn" if short else "ok", "keys", detail + (f"; {short} shorter than 32 characters" if short else ""))


async def _stores(settings: Settings, report: Report) -> None:
    try:
        async with open_services(settings) as services:
            uploads = bool(settings.ingest_tokens)  # then the store must take writes too
            await _check(report, "originals store", settings.originals, ready._originals(services.originals, uploads))
            await _check(report, "variant store (read)", settings.variants, ready._variants(services.store))
            await _check(report, "variant store (write)", "a probe written, read back and deleted",
                         _write_probe(services.store))
            await _check(report, "render worker", f"{services.renderer.workers} worker(s)",
                         services.check_render())
    except (ImgproxyError, OSError, RuntimeError) as exc:  # RuntimeError: no render worker starts
        report.add("FAIL", "services", f"cannot start: {exc}")


async def _check(report: Report, what: str, detail: str, check: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(check, ready.TIMEOUT * 2)
    except (ImgproxyError, OSError, TimeoutError, ProbeError) as exc:
        report.add("FAIL", what, f"{detail}: {exc or type(exc).__name__}")
        return
    report.add("ok", what, detail)


class ProbeError(Exception):
    pass


async def _write_probe(store: VariantStore) -> None:
    key = f".doctor/{secrets.token_hex(8)}.png"
    blob = Blob.of(b"imgproxy doctor probe", 0)
    try:
        await store.put(key, blob, {"preset-digest": "doctor", "source": "doctor"})
        back = await store.get(key)
        if back is None or back.body != blob.body:
            raise ProbeError("the probe read back differs")
    finally:
        await store.delete(key)
    if await store.get(key) is not None:
        raise ProbeError("the probe could not be deleted")
    degraded = getattr(store, "degraded", None)
    if degraded:
        raise ProbeError(f"writes fail ({degraded})")


def _formats(report: Report) -> None:
    try:
        out = subprocess.run([sys.executable, "-m", "imgproxy.render.capabilities"], capture_output=True,
                             text=True, timeout=CAPABILITIES_TIMEOUT)
    except subprocess.TimeoutExpired:
        report.add("FAIL", "formats", f"the format probe took over {CAPABILITIES_TIMEOUT}s")
        return
    try:
        found = json.loads(out.stdout)
    except ValueError:
        report.add("FAIL", "formats", f"the format probe died (exit {out.returncode}): {out.stderr[-500:]}")
        return
    report.add("ok", "libvips", found["libvips"])
    for kind, results in (("input", found["inputs"]), ("output", found["outputs"])):
        for name, status in results.items():
            if kind == "output" and name not in OUTPUTS:
                continue  # a format libvips may write that we do not offer
            # "yes" was tried; "has <decoder>" is HEIC's decoder found (nothing
            # here encodes a HEVC sample); "no (...)" failed.
            level = "ok" if status.startswith(("yes", "has ")) else "FAIL" if status.startswith("no") else "warn"
            detail = status if status.startswith("has ") else "decodes" if kind == "input" else "encodes"
            report.add(level, f"{kind} {name}", detail if level == "ok" else status)
    missing = set(OUTPUTS) - set(found["outputs"])
    if missing:
        report.add("FAIL", "outputs", f"not tried: {sorted(missing)}")
