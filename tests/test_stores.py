"""Helpers every store shares (imgproxy/stores/__init__.py, stores/spool.py)."""

from pathlib import Path

import anyio
import pytest

from imgproxy.errors import GatewayTimeout, TooLarge, Unavailable
from imgproxy.stores import download_deadline
from imgproxy.stores.spool import Spool


async def chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_spool_writes_chunks_to_a_file_up_to_the_limit(tmp_path: Path):
    spool = Spool(100, str(tmp_path))
    spooled = await spool.receive(chunks(b"ab", b"cd"), 4)
    assert Path(spooled.path).read_bytes() == b"abcd" and spooled.size == 4 and spool.held == 4
    spooled.close()
    spooled.close()  # twice is harmless
    assert not Path(spooled.path).exists() and spool.held == 0


async def test_spool_refuses_as_soon_as_the_limit_is_passed(tmp_path: Path):
    seen = []

    async def endless():
        while True:
            seen.append(1)
            yield b"x" * 10

    spool = Spool(1000, str(tmp_path))
    with pytest.raises(TooLarge) as info:
        await spool.receive(endless(), 25)
    assert info.value.extra["limit"] == "max_source_bytes" and len(seen) == 3
    assert spool.held == 0 and not any(tmp_path.rglob("orig-*"))


async def test_spool_budget_refuses_with_503_and_gives_back_on_close(tmp_path: Path):
    spool = Spool(10, str(tmp_path))
    first = await spool.receive(chunks(b"x" * 6), 100)
    with pytest.raises(Unavailable) as info:  # by its Content-Length, before a byte is read
        await spool.receive(chunks(), 100, declared=5)
    assert info.value.retry_after == 1 and info.value.extra["limit"] == "originals_budget_mb"
    with pytest.raises(Unavailable):  # by its bytes, as they arrive
        await spool.receive(chunks(b"x" * 3, b"x" * 3), 100)
    assert spool.held == 6 and len(list(tmp_path.rglob("orig-*"))) == 1
    first.close()
    (await spool.receive(chunks(b"x" * 10), 100)).close()
    spool.close()
    assert not any(tmp_path.iterdir())


async def test_download_deadline():
    with pytest.raises(GatewayTimeout) as info:
        with download_deadline(0.05):
            await anyio.sleep(1)
    assert info.value.extra["limit"] == "download_timeout"
