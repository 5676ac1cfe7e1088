"""ProcessRenderer in this process: limits, deadlines, crashes, backpressure."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import corpus

from imgproxy.errors import GatewayTimeout, TooLarge, Unavailable, Undecodable
from imgproxy.presets import Preset
from imgproxy.render import Limits, RenderJob, Source
from imgproxy.workers import ProcessRenderer, ThreadRenderer
from imgproxy.workers.codec import MAX_JOB

SMALL = Preset(name="small", width=64, height=64)
LARGE = Preset(name="large", width=4000, height=4000)


def job(path: Path, preset: Preset = SMALL, fmt: str = "webp") -> RenderJob:
    return RenderJob(Source(path=str(path)), preset, fmt, Limits())


def slow_job() -> RenderJob:
    """Seconds of work: a 20 MP AVIF decoded in full and encoded as a 4000px AVIF."""
    return job(corpus("large/mei__Issue_649.avif"), LARGE, "avif")


async def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def started_job(renderer: ProcessRenderer, work: RenderJob) -> tuple[asyncio.Task, int]:  # type: ignore[type-arg]
    """A render under way, and the pid of the worker running it."""
    idle_before = set(renderer.pids)
    task = asyncio.ensure_future(renderer.render(work))
    await wait_for(lambda: renderer._idle.qsize() < len(idle_before))
    busy = set(renderer.pids) - {w.pid for w in renderer._idle._queue}  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)  # let it get into the decoder
    return task, busy.pop()


@pytest.fixture
async def renderer() -> AsyncIterator[ProcessRenderer]:
    r = ProcessRenderer(concurrency=1, queue=1, timeout=20, memory_mb=2048, cpu_seconds=60)
    await r.start()
    yield r
    await r.aclose()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_renders_a_path_and_small_bytes(renderer: ProcessRenderer) -> None:
    path = corpus("exif/exifsamples__Canon_40D.jpg")
    from_path = await renderer.render(job(path))
    # Bytes travel inside the job (the health probe's); fetched originals are spool files.
    from_bytes = await renderer.render(RenderJob(Source(data=path.read_bytes()), SMALL, "webp", Limits()))
    assert from_path.body[:4] == b"RIFF" and from_path.body[8:12] == b"WEBP"
    assert (from_bytes.width, from_bytes.height) == (from_path.width, from_path.height)
    [pid] = renderer.pids
    with pytest.raises(ValueError, match="as a file"):  # a bug, refused before it reaches a worker
        await renderer.render(RenderJob(Source(data=bytes(MAX_JOB)), SMALL, "webp", Limits()))
    assert renderer.pids == [pid] and renderer.idle == 1


async def test_bad_input_is_a_4xx_and_keeps_the_worker(renderer: ProcessRenderer) -> None:
    [pid] = renderer.pids
    with pytest.raises(Undecodable) as info:
        await renderer.render(job(corpus("corrupt/sharp__corrupt-header.jpg")))
    assert info.value.status == 422
    with pytest.raises(TooLarge) as too_large:
        await renderer.render(job(corpus("bomb/sharp__giant-image.jpg")))
    assert too_large.value.extra["limit"] == "max_source_pixels"
    assert renderer.pids == [pid]


async def test_deadline_kills_the_worker_and_a_new_one_serves() -> None:
    r = ProcessRenderer(concurrency=1, queue=0, timeout=1.0, memory_mb=2048, cpu_seconds=60)
    await r.start()
    try:
        [pid] = r.pids
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(GatewayTimeout) as info:
            await r.render(slow_job())
        assert loop.time() - started < 2.5
        assert info.value.extra["limit"] == "render_timeout"
        await wait_for(lambda: not alive(pid))
        await wait_for(lambda: r.workers == 1 and r.pids != [pid])
        assert (await r.render(job(corpus("svg/linku__star.svg")))).width > 0
    finally:
        await r.aclose()


async def test_sigkill_mid_render_is_503_then_service_resumes(renderer: ProcessRenderer) -> None:
    task, pid = await started_job(renderer, slow_job())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable) as info:
        await task
    assert info.value.status == 503 and info.value.retry_after
    rendered = await renderer.render(job(corpus("svg/linku__star.svg")))
    assert rendered.width > 0 and renderer.workers == 1 and pid not in renderer.pids


async def test_a_crashing_decoder_is_422(renderer: ProcessRenderer) -> None:
    task, pid = await started_job(renderer, slow_job())
    os.kill(pid, signal.SIGSEGV)  # what a decoder bug looks like from outside
    with pytest.raises(Undecodable) as info:
        await task
    assert info.value.extra["signal"] == "SIGSEGV"
    assert (await renderer.render(job(corpus("svg/linku__star.svg")))).width > 0


async def test_a_full_queue_is_refused_at_once(renderer: ProcessRenderer) -> None:
    running = asyncio.ensure_future(renderer.render(slow_job()))
    waiting = asyncio.ensure_future(renderer.render(slow_job()))
    await wait_for(lambda: renderer.pending == 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable) as info:
        await renderer.render(job(corpus("svg/linku__star.svg")))
    assert loop.time() - started < 0.1 and info.value.retry_after == 1
    await asyncio.gather(running, waiting)
    assert renderer.pending == 0


async def test_waiting_requests_time_out_cleanly() -> None:
    r = ProcessRenderer(concurrency=1, queue=4, timeout=1.0, memory_mb=2048, cpu_seconds=60)
    await r.start()
    try:
        results = await asyncio.gather(*(r.render(slow_job()) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(x, GatewayTimeout) for x in results)
        assert r.pending == 0
        await wait_for(lambda: r.workers == 1 and r._idle.qsize() == 1)
    finally:
        await r.aclose()


async def test_workers_are_capped_and_hold_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPROXY_KEYS", "secret-signing-key-0123456789abcdef")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-aws-key")
    r = ProcessRenderer(concurrency=2, queue=0, timeout=5, memory_mb=1536, cpu_seconds=60)
    await r.start()
    try:
        assert r.workers == 2
        for pid in r.pids:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"secret" not in environ
            limits = Path(f"/proc/{pid}/limits").read_text()
            line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
            assert line.split()[3] == str(1536 * 1024 * 1024)
            core = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
            assert core.split()[4] == "0"
    finally:
        pids = r.pids
        await r.aclose()
    assert not any(alive(pid) for pid in pids)


async def test_a_tight_memory_cap_fails_the_render_not_the_pool() -> None:
    r = ProcessRenderer(concurrency=1, queue=0, timeout=20, memory_mb=420, cpu_seconds=60)
    await r.start()
    try:
        # A 6000px AVIF needs the whole image and the AV1 encoder's buffers
        # in memory: more than 420 MiB of address space.
        big = RenderJob(Source(path=str(corpus("large/mei__Issue_266.jpg"))),
                        Preset(name="x", width=6000, height=6000), "avif",
                        Limits(max_output_pixels=10**9))
        with pytest.raises((TooLarge, Undecodable)) as info:
            await r.render(big)
        assert info.value.status in (413, 422)
        await wait_for(lambda: r.workers == 1 and r._idle.qsize() == 1)
        assert (await r.render(job(corpus("svg/linku__star.svg")))).width > 0
    finally:
        await r.aclose()


async def test_thread_mode_keeps_the_same_interface() -> None:
    r = ThreadRenderer(concurrency=1, queue=0, timeout=5)
    rendered = await r.render(job(corpus("svg/linku__star.svg")))
    assert rendered.width > 0 and r.pending == 0 and r.workers == 1
    await r.aclose()


async def test_a_pool_whose_workers_cannot_start_says_so() -> None:
    r = ProcessRenderer(concurrency=1, queue=0, timeout=5, memory_mb=16, cpu_seconds=60)
    with pytest.raises(RuntimeError, match="did not start"):
        await r.start()
    await r.aclose()


async def test_a_render_past_its_cpu_cap_is_422_and_the_worker_replaced() -> None:
    r = ProcessRenderer(concurrency=1, queue=0, timeout=30, memory_mb=2048, cpu_seconds=1)
    await r.start()
    try:
        [pid] = r.pids
        small = job(corpus("svg/linku__star.svg"))
        for _ in range(3):  # the cap is per job, not per worker lifetime
            assert (await r.render(small)).width > 0
        with pytest.raises(Undecodable) as info:
            await r.render(slow_job())
        assert info.value.extra["limit"] == "worker_cpu_seconds"
        await wait_for(lambda: r.workers == 1 and r._idle.qsize() == 1)
        assert r.pids != [pid] and (await r.render(small)).width > 0
    finally:
        await r.aclose()


def test_one_restart_backoff_for_workers_and_the_pool() -> None:
    from imgproxy.workers.base import restart_delay

    delays = [0.0]
    for _ in range(9):
        delays.append(restart_delay(delays[-1]))
    assert delays[1:] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
