"""Results on the wire between a render worker and the server: JSON plus raw bytes.

The server never unpickles what a worker sends (a decoder exploit must not
become code in the server), so every result kind has a JSON form here::

    Rendered   {"ok": true, "kind": "rendered", "width": w, "height": h}      body: the variant
    Fanned     {"ok": true, "kind": "fanned", "parts": [part, ...]}           body: the variants, concatenated
               part: {"width": w, "height": h, "size": n} or {"error": <error meta>}
    Probed     {"ok": true, "kind": "probed", "info": {...}}                  no body
    an error   {"ok": false, "status": s, "error": e, "detail": d, "extra": {...}}
"""

from __future__ import annotations

import asyncio
import json
import pickle
import struct
import traceback
from typing import Any

from ..errors import ImgproxyError
from ..render import Fanned, Job, Probed, Rendered, Result

JOB_HEADER = struct.Struct("!Q")  # parent -> worker: length, then the pickled job
REPLY_HEADER = struct.Struct("!IQ")  # worker -> parent: meta and body lengths
MAX_META = 64 * 1024
MAX_BODY = 1 << 30
#: A job names its original's file; only a tiny one (the health check's probe) carries bytes.
MAX_JOB = 1 << 20


def encode_job(job: Job) -> bytes:
    """``job``'s frame for a worker or the pool (the server is trusted: pickle one way only).
    Fetched originals are spool files, so a larger job is a bug, refused before it is sent."""
    payload = pickle.dumps(job)
    if len(payload) > MAX_JOB:
        raise ValueError(f"a render job of {len(payload)} bytes: pass an original over "
                         f"{MAX_JOB} bytes as a file, not as bytes")
    return JOB_HEADER.pack(len(payload)) + payload


def encode_reply(meta: dict[str, Any], body: bytes = b"") -> list[bytes]:
    raw = json.dumps(meta).encode()
    return [REPLY_HEADER.pack(len(raw), len(body)), raw, body]


async def read_reply(reader: asyncio.StreamReader, max_meta: int = MAX_META) -> tuple[dict[str, Any], bytes]:
    """One reply frame; ValueError for one too large or whose meta is not a JSON object."""
    meta_len, body_len = REPLY_HEADER.unpack(await reader.readexactly(REPLY_HEADER.size))
    if meta_len > max_meta or body_len > MAX_BODY:
        raise ValueError(f"a {meta_len}/{body_len} byte reply frame")
    meta = json.loads(await reader.readexactly(meta_len))
    if not isinstance(meta, dict):
        raise ValueError("reply meta is not an object")
    return meta, await reader.readexactly(body_len)


#: Every error a worker may report, by status; anything else it sends is a bug.
ERRORS: dict[int, type[ImgproxyError]] = {cls.status: cls for cls in ImgproxyError.__subclasses__()}


class WorkerBug(RuntimeError):
    """The pipeline raised something that is not an ImgproxyError: a bug, logged, answered 500."""


def encode_result(result: Result) -> tuple[dict[str, Any], bytes]:
    if isinstance(result, Rendered):
        return {"ok": True, "kind": "rendered", "width": result.width, "height": result.height}, result.body
    if isinstance(result, Fanned):
        parts: list[dict[str, Any]] = []
        bodies: list[bytes] = []
        for part in result.results:
            if isinstance(part, Rendered):
                parts.append({"width": part.width, "height": part.height, "size": len(part.body)})
                bodies.append(part.body)
            else:
                parts.append({"error": error_meta(part)})
        return {"ok": True, "kind": "fanned", "parts": parts}, b"".join(bodies)
    return {"ok": True, "kind": "probed", "info": result.info}, b""


def error_meta(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ImgproxyError):
        extra = {k: v for k, v in exc.extra.items() if isinstance(v, (str, int, float))}
        return {"ok": False, "status": exc.status, "error": exc.error, "detail": exc.detail,
                "extra": extra, "internal": exc.internal[:500]}
    if isinstance(exc, MemoryError):
        return {"ok": False, "status": 413, "error": "too_large", "exit": True,
                "detail": "rendering the original needs more memory than a worker may use",
                "extra": {"limit": "worker_memory_mb"}}
    # A bug, not the input: the parent logs it and answers 500, as in thread mode.
    return {"ok": False, "status": 500, "error": "internal", "detail": repr(exc)[:500],
            "extra": {"traceback": traceback.format_exc()[-4000:]}}


def decode_result(meta: dict[str, Any], body: bytes, pid: int) -> Result:
    if meta.get("ok") is not True:
        raise decode_error(meta, pid)
    kind = meta.get("kind")
    if kind == "rendered":
        return Rendered(body=body, width=int(meta["width"]), height=int(meta["height"]))
    if kind == "fanned":
        results: list[Rendered | ImgproxyError] = []
        offset = 0
        for part in meta["parts"]:
            if "error" in part:
                error = decode_error(part["error"], pid)
                if isinstance(error, WorkerBug):
                    raise error
                results.append(error)
                continue
            size = int(part["size"])
            results.append(Rendered(body[offset:offset + size], int(part["width"]), int(part["height"])))
            offset += size
        return Fanned(tuple(results))
    if kind == "probed":
        return Probed(dict(meta["info"]))
    raise ValueError(f"render worker {pid} sent an unknown result kind {kind!r}")


def decode_error(meta: dict[str, Any], pid: int) -> ImgproxyError | WorkerBug:
    error = ERRORS.get(meta.get("status"))  # type: ignore[arg-type]
    if error is None or (error.status >= 500 and error.status != 504):
        # A bug in the pipeline, reported by the worker: logged and answered 500.
        return WorkerBug(f"render worker {pid}: {meta.get('detail')}\n"
                         f"{(meta.get('extra') or {}).get('traceback', '')}")
    extra = meta.get("extra") or {}
    rebuilt = error.rebuilt(str(meta.get("detail", "render failed"))[:500],
                            {str(k)[:40]: v for k, v in dict(extra).items()
                             if isinstance(v, (str, int, float)) and k not in ("detail", "retry_after")})
    rebuilt.internal = str(meta.get("internal") or "")[:500]
    return rebuilt
