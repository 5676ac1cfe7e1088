"""The S3 render lease, driven directly against moto in server mode."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from imgproxy.stores import Blob
from imgproxy.stores.s3lease import S3Lease

KEY = "thumbnail/abc/cat.webp"


class Bucket:
    """The variant side of the protocol: what holders store, what waiters poll."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.renders = 0

    async def get(self, key: str) -> Blob | None:
        try:
            obj = await self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return Blob.of(await obj["Body"].read(), 0)

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def render(self, lease: S3Lease, seconds: float = 0.3) -> Blob:
        async with lease.hold(KEY, self.get, self.exists) as stored:
            if stored is not None:
                return stored
            self.renders += 1
            await asyncio.sleep(seconds)
            await self.s3.put_object(Bucket=self.bucket, Key=KEY, Body=b"variant", IfNoneMatch="*")
            return Blob.of(b"variant", 0)

    async def lease_state(self) -> dict[str, str] | None:
        try:
            head = await self.s3.head_object(Bucket=self.bucket, Key=".leases/" + KEY)
        except Exception:
            return None
        return dict(head["Metadata"])


def leases(s3: Any, bucket: str, seconds: float, n: int) -> list[S3Lease]:
    return [S3Lease(s3, bucket, ".leases/", seconds) for _ in range(n)]


async def test_a_crowd_renders_once_and_the_lease_is_deleted(s3: Any, bucket: str) -> None:
    store = Bucket(s3, bucket)
    results = await asyncio.gather(*(store.render(lease) for lease in leases(s3, bucket, 10, 12)))
    assert store.renders == 1
    assert {v.body for v in results} == {b"variant"}
    assert await store.lease_state() is None


async def test_expired_lease_has_exactly_one_taker(s3: Any, bucket: str) -> None:
    store = Bucket(s3, bucket)
    dead = S3Lease(s3, bucket, ".leases/", 1)
    assert await dead._take(KEY, None) is not None  # taken, then its holder "dies"
    started = time.monotonic()
    results = await asyncio.gather(*(store.render(lease) for lease in leases(s3, bucket, 1, 8)))
    assert store.renders == 1
    assert {v.body for v in results} == {b"variant"}
    # Expiry is judged on S3's clock with whole seconds: 1 s lease + 1 s resolution.
    assert 1 <= time.monotonic() - started < 6


async def test_a_failed_holder_releases_at_once(s3: Any, bucket: str) -> None:
    store = Bucket(s3, bucket)
    first, second = leases(s3, bucket, 30, 2)

    async def fail() -> None:
        async with first.hold(KEY, store.get, store.exists):
            await asyncio.sleep(0.3)
            raise RuntimeError("render failed")

    started = time.monotonic()
    failing = asyncio.ensure_future(fail())
    await asyncio.sleep(0.1)
    result = await store.render(second)  # waits on the held lease, then takes it over
    with pytest.raises(RuntimeError):
        await failing
    assert result.body == b"variant"
    assert store.renders == 1
    assert time.monotonic() - started < 5, "a released lease must not wait for its expiry"


async def test_a_long_hold_is_renewed_not_taken_over(s3: Any, bucket: str) -> None:
    """A holder busy for three lease periods keeps its lease; waiters never take it over."""
    store = Bucket(s3, bucket)
    holder, *waiters = leases(s3, bucket, 1, 4)
    slow = asyncio.ensure_future(store.render(holder, seconds=4.5))
    await asyncio.sleep(0.2)
    results = await asyncio.gather(*(store.render(lease) for lease in waiters), slow)
    assert store.renders == 1  # a takeover would render again (and lose the variant's write)
    assert {v.body for v in results} == {b"variant"}
    assert await store.lease_state() is None


async def test_holder_that_finds_the_variant_does_not_render(s3: Any, bucket: str) -> None:
    store = Bucket(s3, bucket)
    await s3.put_object(Bucket=bucket, Key=KEY, Body=b"variant")
    (lease,) = leases(s3, bucket, 10, 1)
    async with lease.hold(KEY, store.get, store.exists) as stored:
        assert stored is not None and stored.body == b"variant"
    assert await store.lease_state() is None


async def test_a_waiter_gives_up_on_a_holder_that_never_finishes(s3: Any, bucket: str) -> None:
    from imgproxy.errors import Unavailable

    store = Bucket(s3, bucket)
    stuck = S3Lease(s3, bucket, ".leases/", 3600)  # alive (its lease says an hour), never stores
    assert await stuck._take(KEY, None) is not None
    (waiter,) = leases(s3, bucket, 0.3, 1)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await store.render(waiter)
    assert info.value.retry_after and 0.8 <= time.monotonic() - started < 5
    assert store.renders == 0
