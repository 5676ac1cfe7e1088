import asyncio

import pytest

from imgproxy.cache.flight import SingleFlight
from imgproxy.cache.memory import MemoryTier, NoMemoryTier, memory_tier
from imgproxy.stores import Blob


def v(size: int) -> Blob:
    return Blob.of(b"x" * size, 0)


def test_memory_tier_is_bounded_in_bytes():
    tier = MemoryTier(10_000)
    for i in range(10):
        tier.put(str(i), v(2_000))
    assert tier.bytes <= 10_000
    assert tier.get("9") is not None and tier.get("0") is None
    tier.put("huge", v(20_000))
    assert tier.get("huge") is None


def test_memory_tier_evicts_the_least_recently_used():
    tier = MemoryTier(3 * (1_000 + 512))
    for key in "abc":
        tier.put(key, v(1_000))
    assert tier.get("a") is not None  # now the most recent: "b" goes first
    tier.put("d", v(1_000))
    assert tier.get("b") is None and all(tier.get(k) is not None for k in "acd")
    tier.put("d", v(1_000))  # the same key again: counted once
    assert tier.bytes == 3 * (1_000 + 512)


def test_memory_tier_off():
    tier = memory_tier(0)
    assert isinstance(tier, NoMemoryTier)
    tier.put("a", v(1))
    assert tier.get("a") is None


async def test_single_flight_runs_once():
    flight: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(50)))
    assert results == [42] * 50 and calls == 1 and len(flight) == 0
    assert await flight.run("k", work) == 42 and calls == 2


async def test_single_flight_shares_errors():
    flight: SingleFlight[int] = SingleFlight()

    async def boom():
        await asyncio.sleep(0.01)
        raise ValueError("bad")

    results = await asyncio.gather(*(flight.run("k", boom) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)


async def test_a_cancelled_caller_does_not_cancel_the_work():
    flight: SingleFlight[str] = SingleFlight()
    done = asyncio.Event()

    async def work():
        await asyncio.sleep(0.1)
        done.set()
        return "ok"

    first = asyncio.create_task(flight.run("k", work))
    second = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0.02)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "ok" and done.is_set()
