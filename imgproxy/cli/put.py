"""``imgproxy put FILE…``: upload originals, here or through a server.

- default: straight into the originals store, through :class:`imgproxy.variants.uploads.Ingest`,
  the same checks as ``PUT /o/<id>`` (sniff, byte cap, header probe in a
  capped worker, exclusive store, eager renders awaited). No server needed.
- ``--via URL``: ``PUT <URL>/o/<id>?wait=1`` with a bearer token
  (``IMGPROXY_INGEST_TOKENS``' first, or the variable ``--token-env`` names).

Ids: ``--id ID`` for one file; else ``--prefix P`` plus the file's name
without its extension (``P`` may end in ``/``). One JSON line per file with
``--json``, a short line otherwise; a progress bar on a terminal for many
files. The exit code is 1 when any upload failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from ..batch.progress import Progress
from ..config import load_settings
from ..errors import ImgproxyError
from ..variants.services import open_services
from ..variants.uploads import Ingest

_CHUNK = 1024 * 1024


def put(args: argparse.Namespace) -> int:
    files = [Path(name) for name in args.files]
    if args.id and len(files) != 1:
        print("imgproxy put: --id names one file's id; use --prefix for several", file=sys.stderr)
        return 2
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"imgproxy put: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    ids = [args.id] if args.id else [(args.prefix or "") + f.name.partition(".")[0] for f in files]
    render = None if args.render is None else [n for n in args.render.split(",") if n and n != "none"]
    return asyncio.run(_put(args, [(id, f, f.stat().st_size) for id, f in zip(ids, files)], render))


async def _put(args: argparse.Namespace, uploads: list[tuple[str, Path, int]], render: list[str] | None) -> int:
    failed = 0
    # Off a terminal each file's own line is the progress.
    with Progress("put", len(uploads), "files", plain=False) as progress:
        async with _uploader(args, render) as upload:
            for id, path, size in uploads:
                try:
                    status, body = await upload(id, path, size)
                except ImgproxyError as exc:
                    status, body = exc.status, exc.body()
                body = {"file": str(path), "status_code": status, **body}
                failed += status >= 400
                _report(body, args.json)
                progress.advance([f"{failed} failed"])
    return 1 if failed else 0


def _uploader(args: argparse.Namespace, render: list[str] | None) -> Any:
    return _via(args, render) if args.via else _local(args, render)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    f = await anyio.to_thread.run_sync(open, path, "rb")
    with f:
        while chunk := await anyio.to_thread.run_sync(f.read, _CHUNK):
            yield chunk


class _local:
    """Straight into the store: the same :class:`Ingest` the server runs."""

    def __init__(self, args: argparse.Namespace, render: list[str] | None) -> None:
        self.args, self.render = args, render

    async def __aenter__(self) -> Callable[[str, Path, int], Any]:
        self._services = open_services(load_settings())
        services = await self._services.__aenter__()
        ingest = Ingest(services)

        async def upload(id: str, path: Path, size: int) -> tuple[int, dict[str, Any]]:
            return await ingest.put(id, _chunks(path), declared=size, replace=self.args.replace,
                                    render=self.render, wait=True, base_url=self.args.base_url)
        return upload

    async def __aexit__(self, *exc: object) -> None:
        await self._services.__aexit__(None, None, None)


class _via:
    """``PUT /o/<id>`` on a server, streamed from the file."""

    def __init__(self, args: argparse.Namespace, render: list[str] | None) -> None:
        self.args, self.render = args, render

    async def __aenter__(self) -> Callable[[str, Path, int], Any]:
        name = self.args.token_env or "IMGPROXY_INGEST_TOKENS"
        token = os.environ.get(name, "").split(",")[0].strip()
        if not token:
            raise SystemExit(f"imgproxy put: --via needs a token in ${name}")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10),
                                         headers={"authorization": f"Bearer {token}"})
        query: dict[str, str] = {"wait": "1"}
        if self.args.replace:
            query["replace"] = "1"
        if self.render is not None:
            query["render"] = ",".join(self.render) or "none"
        base = self.args.via.rstrip("/")

        async def upload(id: str, path: Path, size: int) -> tuple[int, dict[str, Any]]:
            headers = {"content-length": str(size)}
            try:
                response = await self._client.put(f"{base}/o/{id}?{urlencode(query)}", content=_chunks(path),
                                                  headers=headers)
            except httpx.HTTPError as exc:
                return 503, {"error": "unavailable", "detail": f"{type(exc).__name__}: {exc}"}
            try:
                return response.status_code, dict(response.json())
            except ValueError:
                return response.status_code, {"error": "bad_response", "detail": response.text[:200]}
        return upload

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()


def _report(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(body), flush=True)
    elif body["status_code"] >= 400:
        print(f"failed {body['file']}: {body['status_code']} {body.get('error')}: {body.get('detail')}",
              file=sys.stderr)
    else:
        rendered = body.get("render", {})
        print(f"{body['status']} {body['id']}: {body['width']}x{body['height']} {body['format']}, "
              f"{body['bytes']} bytes, sha256 {body['sha256'][:12]}…, renders {rendered.get('state')}"
              f" ({rendered.get('rendered', 0)} rendered)", flush=True)


__all__ = ["put"]
