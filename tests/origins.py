"""Tiny raw ASGI origins for the HTTP store tests, run on a real uvicorn:

    python -m uvicorn tests.origins:app --port N   (ORIGIN_PHOTO=<a JPEG>)

Everything lives under ``/img/``; ``/stats`` counts the requests seen.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]

PHOTO = Path(os.environ["ORIGIN_PHOTO"]).read_bytes() if "ORIGIN_PHOTO" in os.environ else b""
#: A JPEG marker and then noise: every decoder refuses it at the header.
JUNK = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (4 * 4096 - 1)
#: /img/big-<n>: JUNK's header and 16 MiB in 1 MiB chunks, never held whole by the origin.
BIG_CHUNK = (JUNK * 64)[: 1 << 20]
BIG_CHUNKS = 16
seen: list[str] = []


async def respond(send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
                  length: int | None = None) -> None:
    headers = [(b"content-length", str(len(body) if length is None else length).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stats":
        await respond(send, 200, json.dumps({"requests": seen}).encode())
        return
    seen.append(path)
    host = dict(scope["headers"]).get(b"host", b"").decode()
    jpeg = [(b"content-type", b"image/jpeg")]
    lax = posixpath.normpath(path.replace("\\", "/"))  # how a lax origin resolves the path
    photos = ("/img/photo.jpg", "/img/plain", "/img/remember.png", "/more/second.png")
    if lax == "/private/secret.png" or path in photos:
        await respond(send, 200, PHOTO, jpeg)
    elif path == "/img/etag-utf8.jpg":  # S3 metadata takes ASCII only
        await respond(send, 200, PHOTO, [*jpeg, (b"etag", b'"caf\xc3\xa9-\xe6\xbc\xa2"')])
    elif path == "/img/etag-latin1.jpg":
        await respond(send, 200, PHOTO, [*jpeg, (b"etag", b'W/"\xff\xfe %41"')])
    elif path == "/img/etag-long.jpg":  # S3 metadata is 2 KB at most
        await respond(send, 200, PHOTO, [*jpeg, (b"etag", b'"' + b"e" * 3000 + b'"')])
    elif path == "/img/slow":
        await asyncio.sleep(30)
        await respond(send, 200, PHOTO, jpeg)
    elif path == "/img/drip":  # headers at once, then a byte a second
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(PHOTO)).encode()), *jpeg]})
        for i in range(30):
            await send({"type": "http.response.body", "body": PHOTO[i:i + 1], "more_body": True})
            await asyncio.sleep(1)
    elif path.startswith("/img/junk-"):  # /img/junk-<n>.jpg: a distinct undecodable original each
        await respond(send, 200, JUNK, jpeg + [(b"etag", f'"{path}"'.encode())])
    elif path.startswith("/img/big-"):  # /img/big-<n>: a distinct 16 MiB undecodable original, streamed
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(BIG_CHUNKS * len(BIG_CHUNK)).encode()), *jpeg,
                                (b"etag", f'"{path}"'.encode())]})
        for _ in range(BIG_CHUNKS):
            await send({"type": "http.response.body", "body": BIG_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/img/bad-date":  # a Last-Modified that is not a date
        await respond(send, 200, PHOTO, [*jpeg, (b"last-modified", b"Tue, 99 Foo 2026 25:61:00 GMT")])
    elif path in ("/img/range-other", "/img/range-wider", "/img/range-unlabelled"):
        # A 206 for any Range, but not always the range asked for.
        first, last = (0, len(PHOTO) - 1) if path.endswith("wider") else (0, 49)
        label = [] if path.endswith("unlabelled") else [
            (b"content-range", f"bytes {first}-{last}/{len(PHOTO)}".encode())]
        if b"range" in dict(scope["headers"]):
            await respond(send, 206, PHOTO[first:last + 1], [*jpeg, *label])
        else:
            await respond(send, 200, PHOTO, jpeg)
    elif path == "/img/broken":
        await respond(send, 500, b"oops")
    elif path == "/img/liar":  # announces far more than it sends, then hangs up
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(PHOTO) * 2).encode()), *jpeg]})
        await send({"type": "http.response.body", "body": PHOTO, "more_body": True})
        raise RuntimeError("hang up")
    elif path == "/img/huge":
        await respond(send, 200, b"", jpeg, length=10 * 1024 * 1024 * 1024)
    elif path == "/img/redirect-inside":
        await respond(send, 302, headers=[(b"location", b"/img/photo.jpg")])
    elif path == "/img/redirect-outside":
        await respond(send, 302, headers=[(b"location", f"http://{host}/secret/photo.jpg".encode())])
    elif path.startswith("/img/redirect-escaped-"):  # escapes that hide a way out of /img/
        location = {"dots": b"/img/%2e%2e/private/secret.png", "upper": b"/img/%2E%2E/private/secret.png",
                    "slash": b"/img/..%2fprivate/secret.png", "backslash": b"/img/..\\private\\secret.png",
                    "pct5c": b"/img/..%5cprivate%5Csecret.png"}[path.rpartition("-escaped-")[2]]
        await respond(send, 302, headers=[(b"location", location)])
    elif path == "/img/redirect-unreserved":  # %70 is "p": allowed, and decoded before the check
        await respond(send, 302, headers=[(b"location", b"/img/%70hoto.jpg")])
    elif path == "/img/redirect-malformed":
        await respond(send, 302, headers=[(b"location", b"http://[::1/img/photo.jpg")])
    elif path == "/img/redirect-private":  # on the allow-list, but a blocked address
        await respond(send, 302, headers=[(b"location", b"http://169.254.169.254/img/photo.jpg")])
    else:
        await respond(send, 404, b"not found")
