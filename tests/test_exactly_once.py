"""Exactly one render per variant across processes and instances.

Real servers (``imgproxy serve``), real moto in server mode, renders counted
through ``/metrics``. Each test prints its herd figures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import Moto, Server, add_original, corpus, put_original

from imgproxy.presets import load_presets
from imgproxy.workers import RendererBase

LARGE = "large/mei__Issue_266.jpg"  # 5760x3840: "web" renders take ~0.5 s, "large" ~2 s
RENDERS = "imgproxy_renders_total"

pytestmark = pytest.mark.slow


def herd(urls: list[str]) -> tuple[list[httpx.Response], float]:
    """GET every URL at once; the responses and the seconds it took."""
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.get(url) for url in urls))

    started = time.monotonic()
    responses = asyncio.run(run())
    return responses, time.monotonic() - started


def check_herd(name: str, responses: list[httpx.Response], seconds: float, renders: float) -> None:
    statuses = {r.status_code for r in responses}
    assert statuses == {200}, [r.text for r in responses if r.status_code != 200][:3]
    assert len({r.content for r in responses}) == 1, "every client must get the same bytes"
    tiers = {t: sum(r.headers["x-imgproxy-tier"] == t for r in responses) for t in ("render", "store", "memory")}
    print(f"\n{name}: {len(responses)} requests, {renders:g} render(s), {seconds:.2f} s, tiers {tiers}")
    assert renders == 1


def variant_key(server: Server, preset: str, id: str, fmt: str) -> str:
    digest = load_presets(server.env["IMGPROXY_PRESETS"])[preset].digest
    return f"{preset}/{digest}/{id}.{fmt}"


def test_local_folder_herd_across_four_workers(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    add_original(tmp_path / "originals", corpus(LARGE), "big")
    server = server_factory(workers=4)
    responses, seconds = herd([server.url("web", "big", "webp")] * 200)
    check_herd("local folder, --workers 4", responses, seconds, server.metric(RENDERS))
    # /metrics sums every worker: all 200 requests are counted, whichever worker answers.
    assert server.metric("imgproxy_requests_total") == 200


def test_s3_herd_across_four_workers(
    server_factory: Callable[..., Server], moto: Moto, bucket: str
) -> None:
    put_original(moto, bucket, "o/big.jpg", corpus(LARGE))
    server = server_factory(originals=f"s3://{bucket}/o", variants=f"s3://{bucket}/v",
                            workers=4, env=moto.env())
    # Which process accepts each connection is the kernel's choice: on a busy
    # machine one process may take a whole herd. A herd counts once waiters in
    # other processes were served from the bucket (it spanned processes); each
    # format is a new variant, so every herd must still render exactly once.
    for herds, fmt in enumerate(("avif", "webp", "jpg"), start=1):
        responses, seconds = herd([server.url("web", "big", fmt)] * 200)
        check_herd(f"S3 bucket, --workers 4 ({fmt})", responses, seconds, server.metric(RENDERS) - (herds - 1))
        assert server.metric("imgproxy_requests_total") == 200 * herds
        stored = moto.client().get_object(Bucket=bucket, Key="v/" + variant_key(server, "web", "big", fmt))
        assert stored["Body"].read() == responses[0].content
        if any(r.headers["x-imgproxy-tier"] == "store" for r in responses):
            break
    else:
        pytest.fail("no herd spanned the server's processes")


def test_two_servers_sharing_a_bucket_render_once(
    server_factory: Callable[..., Server], moto: Moto, bucket: str
) -> None:
    put_original(moto, bucket, "o/big.jpg", corpus(LARGE))
    servers = [server_factory(originals=f"s3://{bucket}/o", variants=f"s3://{bucket}/v", workers=2,
                              env=moto.env()) for _ in range(2)]
    urls = [servers[i % 2].url("web", "big", "webp") for i in range(200)]
    responses, seconds = herd(urls)
    renders = sum(s.metric(RENDERS) for s in servers)
    check_herd("two servers, one bucket", responses, seconds, renders)


def test_lease_holder_killed_mid_render(
    server_factory: Callable[..., Server], moto: Moto, bucket: str
) -> None:
    put_original(moto, bucket, "o/big.jpg", corpus(LARGE))
    env = moto.env(IMGPROXY_S3_LEASE_SECONDS="12", IMGPROXY_RENDER_TIMEOUT="10", IMGPROXY_DOWNLOAD_TIMEOUT="1")
    holder, *others = [
        server_factory(originals=f"s3://{bucket}/o", variants=f"s3://{bucket}/v", env=env) for _ in range(3)
    ]
    s3 = moto.client()
    key = "v/" + variant_key(holder, "large", "big", "webp")
    lease = "v/.leases/" + variant_key(holder, "large", "big", "webp")

    # Every version of the variant key anyone could see, from start to end.
    seen: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.append(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except ClientError:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        first = threading.Thread(target=lambda: _get_quietly(holder.url("large", "big", "webp")))
        first.start()
        deadline = time.monotonic() + 10
        while not _exists(s3, bucket, lease):
            assert time.monotonic() < deadline, "the holder never took the lease"
            time.sleep(0.02)
        time.sleep(0.5)  # fetched the original; rendering "large" takes ~2 s
        os.killpg(holder.proc.pid, signal.SIGKILL)
        holder.proc.wait(10)
        first.join(10)
        assert not _exists(s3, bucket, key), "the holder must have died before storing"

        urls = [others[i % 2].url("large", "big", "webp") for i in range(20)]
        responses, seconds = herd(urls)
    finally:
        stop.set()
        watcher.join(10)
    renders = sum(s.metric(RENDERS) for s in others)
    check_herd("holder killed, two survivors", responses, seconds, renders)
    assert sum(s.metric('imgproxy_leases_total{outcome="taken_over"}') for s in others) == 1
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == responses[0].content
    assert seen and all(body == stored for body in seen), "a partial or different object was visible"
    assert not _exists(s3, bucket, lease), "the lease is deleted once the variant is stored"


def _exists(s3: object, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    except ClientError:
        return False
    return True


def _get_quietly(url: str) -> None:
    try:
        httpx.get(url, timeout=30)
    except httpx.HTTPError:
        pass  # the server is killed under this request


class _StubRenderer(RendererBase):
    """Stands in for the render pool: returns ``body`` after ``seconds``."""

    capacity, pending = 8, 0

    def __init__(self, body: bytes, seconds: float) -> None:
        self.body, self.seconds = body, seconds

    async def run(self, job: object, started: object = None) -> object:
        from imgproxy.render import Rendered

        await asyncio.sleep(self.seconds)
        return Rendered(self.body, 1, 1)


async def test_slow_holder_after_takeover_serves_the_stored_variant(
    s3: object, bucket: str, tmp_path: Path
) -> None:
    """A holder that outlives its lease (its renewals never got through) loses the
    variant's conditional write and serves the stored bytes, so both instances
    answer identically."""
    from imgproxy.cache.memory import NoMemoryTier
    from imgproxy.presets import Preset
    from imgproxy.render import Limits
    from imgproxy.stores.local import LocalOriginals
    from imgproxy.stores.s3 import S3Variants
    from imgproxy.urls import VariantRequest
    from imgproxy.variants.service import VariantService

    (tmp_path / "cat.jpg").write_bytes(b"not decoded by the stub")
    originals = LocalOriginals(str(tmp_path), 1000)
    request, preset = VariantRequest("p", "cat", "webp"), Preset("p", 10, 10)

    def instance(body: bytes, seconds: float) -> VariantService:
        store = S3Variants(s3, f"s3://{bucket}/v", lease_seconds=1)
        store.leases.renew_every = None  # cut off from S3 while it renders
        return VariantService(originals, store, NoMemoryTier(), _StubRenderer(body, seconds), Limits())  # type: ignore[arg-type]

    slow, fast = instance(b"slow", 4.0), instance(b"fast", 0.1)
    slow_task = asyncio.ensure_future(slow.serve(request, preset))
    await asyncio.sleep(0.3)  # the slow one holds the lease; it expires after ~2 s
    (_, fast_variant, fast_tier, _), (_, slow_variant, _, _) = await asyncio.gather(
        fast.serve(request, preset), slow_task
    )
    assert fast_tier == "render" and fast_variant.body == b"fast"
    assert slow_variant.body == b"fast", "the slow holder must serve what was stored"
    stored = await s3.get_object(Bucket=bucket, Key=f"v/p/{preset.digest}/cat.webp")  # type: ignore[attr-defined]
    assert await stored["Body"].read() == b"fast"
