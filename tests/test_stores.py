"""Helpers every store shares (imgproxy/stores/__init__.py)."""

import anyio
import pytest

from imgproxy.errors import GatewayTimeout, TooLarge
from imgproxy.stores import download_deadline, read_capped


async def chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_read_capped_joins_chunks_up_to_the_limit():
    assert await read_capped(chunks(b"ab", b"cd"), 4) == b"abcd"


async def test_read_capped_refuses_as_soon_as_the_limit_is_passed():
    seen = []

    async def endless():
        while True:
            seen.append(1)
            yield b"x" * 10

    with pytest.raises(TooLarge) as info:
        await read_capped(endless(), 25)
    assert info.value.extra["limit"] == "max_source_bytes" and len(seen) == 3


async def test_download_deadline():
    with pytest.raises(GatewayTimeout) as info:
        with download_deadline(0.05):
            await anyio.sleep(1)
    assert info.value.extra["limit"] == "download_timeout"

