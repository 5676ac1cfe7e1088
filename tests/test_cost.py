"""Cost attacks: originals cheap to send and dear to render, refused from their header
or remembered; SVG work bounded (render/svgcost.py); /metrics and /healthz restricted."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Server


def tall_png(path: Path, height: int = 99_000_000) -> Path:
    """A valid 1 x ``height`` grey PNG of about 95 KB, written without holding its rows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    rows = b"\x00\x00" * 1_000_000  # filter byte + one pixel, a million rows at a time
    body = b"".join(deflate.compress(rows) for _ in range(height // 1_000_000)) + deflate.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_an_absurd_shape_is_refused_from_its_header(server: Server) -> None:
    tall_png(server.originals / "tall.png")
    assert (server.originals / "tall.png").stat().st_size < 200_000
    started = time.monotonic()
    r = server.get(server.url("thumbnail", "tall"))
    assert r.status_code == 413, r.text
    assert r.json()["limit"] == "max_source_side" and time.monotonic() - started < 5


@pytest.mark.slow
def test_an_original_that_keeps_timing_out_is_answered_at_once(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={"IMGPROXY_MAX_SOURCE_SIDE": "100000000", "IMGPROXY_RENDER_TIMEOUT": "1.5"})
    tall_png(server.originals / "tall.png")
    for fmt in ("webp", "png"):  # two strikes, each a real render killed at its deadline
        r = server.get(server.url("thumbnail", "tall", fmt))
        assert r.status_code == 504, r.text
    for fmt in ("avif", "jpg"):
        started = time.monotonic()
        r = server.get(server.url("thumbnail", "tall", fmt))
        assert r.status_code == 504 and "not tried again" in r.json()["detail"]
        assert time.monotonic() - started < 0.5
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
