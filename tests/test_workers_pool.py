"""The machine's render pool (workers/pool.py) and a server process's end of it
(workers/remote.py): first a pool and a RemoteRenderer in this process, then
``serve --workers 2``, whose server processes share one pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server, add_original, corpus, descendants
from test_faults import cpu_ticks, slow_original, wait_until
from test_workers import alive, job, slow_job, wait_for

from imgproxy.errors import GatewayTimeout, RenderTimeout, Unavailable, Undecodable
from imgproxy.render import Limits, RenderJob, Source
from imgproxy.workers.pool import PoolKeeper
from imgproxy.workers.remote import RemoteRenderer

STAR = "svg/linku__star.svg"


def keeper(concurrency: int = 1, queue: int = 1, memory_mb: int = 2048, cpu_seconds: int = 60) -> PoolKeeper:
    return PoolKeeper(concurrency, queue, memory_mb, cpu_seconds, vips_concurrency=1)


@pytest.fixture
async def pool() -> AsyncIterator[tuple[PoolKeeper, RemoteRenderer]]:
    with keeper() as k:
        r = RemoteRenderer(str(k.folder), concurrency=1, queue=1, timeout=20)
        await wait_for(lambda: r.workers == 1)
        yield k, r
        await r.aclose()


async def running(r: RemoteRenderer, work: RenderJob) -> asyncio.Task:  # type: ignore[type-arg]
    """A render that a pool worker has taken."""
    began = asyncio.Event()

    async def go() -> object:
        with r.admit():
            return await r.run(work, began.set)

    task = asyncio.ensure_future(go())
    await asyncio.wait_for(began.wait(), 15)
    await asyncio.sleep(0.3)  # into the decoder
    return task


async def test_renders_paths_and_small_bytes_and_shows_its_workers(
        pool: tuple[PoolKeeper, RemoteRenderer]) -> None:
    k, r = pool
    path = corpus("exif/exifsamples__Canon_40D.jpg")
    from_path = await r.render(job(path))
    from_bytes = await r.render(RenderJob(Source(data=path.read_bytes()), job(path).preset, "webp", Limits()))
    assert from_path.body[8:12] == b"WEBP" and from_bytes.width == from_path.width
    [pid] = r.pids
    assert pid in descendants(k._proc.pid) and r.idle == 1  # type: ignore[union-attr]
    assert oct(k.folder.stat().st_mode & 0o777) == "0o700"


async def test_a_cancelled_render_kills_its_worker_and_a_cancelled_wait_is_dropped(
        pool: tuple[PoolKeeper, RemoteRenderer]) -> None:
    _, r = pool
    [pid] = r.pids
    rendering = await running(r, slow_job())
    waiting = asyncio.ensure_future(r.render(slow_job()))
    await asyncio.sleep(0.3)
    waiting.cancel()
    rendering.cancel()
    await asyncio.gather(rendering, waiting, return_exceptions=True)
    await wait_for(lambda: not alive(pid) and r.workers == 1 and r.idle == 1)
    await asyncio.sleep(0.5)
    assert r.idle == 1  # the new worker did not take the dropped job
    assert (await r.render(job(corpus(STAR)))).width > 0


async def test_the_deadline_tells_a_slow_render_from_a_long_wait() -> None:
    with keeper(queue=4) as k:
        r = RemoteRenderer(str(k.folder), concurrency=1, queue=4, timeout=1.0)
        await wait_for(lambda: r.workers == 1)
        [pid] = r.pids
        first, second = await asyncio.gather(r.render(slow_job()), r.render(slow_job()),
                                             return_exceptions=True)
        assert isinstance(first, RenderTimeout) and first.extra["limit"] == "render_timeout"
        assert isinstance(second, GatewayTimeout) and not isinstance(second, RenderTimeout)
        await wait_for(lambda: r.workers == 1 and r.pids != [pid])
        assert (await r.render(job(corpus(STAR)))).width > 0
        await r.aclose()


async def test_worker_deaths_map_as_in_process(pool: tuple[PoolKeeper, RemoteRenderer]) -> None:
    _, r = pool
    task = await running(r, slow_job())
    [pid] = r.pids
    os.kill(pid, signal.SIGSEGV)  # a decoder bug, from outside
    with pytest.raises(Undecodable) as crashed:
        await task
    assert crashed.value.extra["signal"] == "SIGSEGV"
    await wait_for(lambda: r.workers == 1 and r.idle == 1)
    task = await running(r, slow_job())
    [pid] = r.pids
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable) as killed:
        await task
    assert killed.value.status == 503 and killed.value.retry_after
    assert (await r.render(job(corpus(STAR)))).width > 0


async def test_workers_keep_their_caps_and_hold_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPROXY_KEYS", "secret-signing-key-0123456789abcdef")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-aws-key")
    with keeper(concurrency=2, memory_mb=1536, cpu_seconds=1) as k:
        r = RemoteRenderer(str(k.folder), concurrency=2, queue=0, timeout=30)
        await wait_for(lambda: r.workers == 2)
        for pid in [k._proc.pid, *r.pids]:  # type: ignore[union-attr]
            assert b"secret" not in Path(f"/proc/{pid}/environ").read_bytes()
        for pid in r.pids:
            limits = Path(f"/proc/{pid}/limits").read_text()
            line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
            assert line.split()[3] == str(1536 * 1024 * 1024)
        with pytest.raises(Undecodable) as info:
            await r.render(slow_job())
        assert info.value.extra["limit"] == "worker_cpu_seconds"
        await r.aclose()


async def test_the_pool_refuses_past_its_machine_wide_queue() -> None:
    with keeper(concurrency=1, queue=1) as k:
        a, b = (RemoteRenderer(str(k.folder), concurrency=1, queue=1, timeout=20) for _ in "ab")
        await wait_for(lambda: a.workers == 1)
        rendering = await running(a, slow_job())
        waiting = asyncio.ensure_future(a.render(slow_job()))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="render queue is full"):
            await b.render(job(corpus(STAR)))  # b's own places are free; the machine's are not
        assert time.monotonic() - started < 0.5
        for task in (rendering, waiting):
            task.cancel()
        await asyncio.gather(rendering, waiting, return_exceptions=True)
        await a.aclose()
        await b.aclose()


async def test_a_dead_pool_is_503_and_comes_back(pool: tuple[PoolKeeper, RemoteRenderer]) -> None:
    k, r = pool
    task = await running(r, slow_job())
    [worker] = r.pids
    old = k._proc
    os.kill(old.pid, signal.SIGKILL)  # type: ignore[union-attr]
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await task
    assert info.value.status == 503 and time.monotonic() - started < 2
    await wait_for(lambda: not alive(worker))  # its busy worker died with it
    with pytest.raises(Unavailable):  # 503 at once while it is away, never a hang
        await r.render(job(corpus(STAR)))
    await wait_for(lambda: k._proc is not old and r.workers == 1, timeout=30)
    assert (await r.render(job(corpus(STAR)))).width > 0


async def test_no_pool_is_503_at_once(tmp_path: Path) -> None:
    r = RemoteRenderer(str(tmp_path), concurrency=1, queue=0, timeout=20)
    assert (r.workers, r.idle, r.pids) == (0, 0, [])
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await r.render(job(corpus(STAR)))
    assert info.value.retry_after == 1 and time.monotonic() - started < 0.5
    await r.aclose()


# --- serve --workers 2: one pool for both server processes ------------------------------

POOLED = {"IMGPROXY_RENDER_MODE": "process", "IMGPROXY_RENDER_THREADS": "2"}  # for the machine


def processes(server: Server, module: bytes) -> list[int]:
    found = []
    for pid in descendants(server.proc.pid):
        try:
            if module in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return sorted(found)


def serving_pid(server: Server, conn: http.client.HTTPConnection) -> int:
    """The server process that accepted ``conn`` (the one holding its other end)."""
    ours, theirs = conn.sock.getsockname()[1], conn.sock.getpeername()[1]
    inode = next(f[9] for f in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
                 if int(f[1].split(":")[1], 16) == theirs and int(f[2].split(":")[1], 16) == ours)
    for pid in descendants(server.proc.pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                pass
    raise AssertionError("no process holds the connection")


def pinned_pair(server: Server) -> list[http.client.HTTPConnection]:
    """Two keep-alive connections that the kernel gave to the same server process."""
    port = int(server.base_url.rsplit(":", 1)[1])
    by_pid: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(40):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/nothing-here")  # accepted once answered
        conn.getresponse().read()
        same = by_pid.setdefault(serving_pid(server, conn), [])
        same.append(conn)
        if len(same) == 2:
            for other in by_pid.values():
                for c in other:
                    if c not in same:
                        c.close()
            return same
    raise AssertionError("forty connections and never two in one process")


def get(conn: http.client.HTTPConnection, url: str) -> int:
    parts = urlsplit(url)
    conn.request("GET", f"{parts.path}?{parts.query}")
    response = conn.getresponse()
    response.read()
    return response.status


@pytest.mark.slow
def test_two_connections_pinned_to_one_server_process_render_at_once(
        server_factory: Callable[..., Server]) -> None:
    # No queue: a server process still admits as many renders as the pool has workers.
    server = server_factory(workers=2, env={**POOLED, "IMGPROXY_RENDER_QUEUE": "0"})
    id = slow_original(server)
    workers = processes(server, b"imgproxy.workers.child")
    assert len(workers) == 2 and server.get("/healthz").json()["render_workers"] == 2
    conns = pinned_pair(server)
    before = {pid: cpu_ticks(pid) for pid in workers}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(get, conn, server.url("large", id, fmt)) for conn, fmt in zip(conns, ("avif", "png"))]
        # Both workers busy while both requests wait: without the shared pool the
        # other process's worker would idle and these renders would queue.
        wait_until(lambda: all(cpu_ticks(pid) > before[pid] + 20 for pid in workers), timeout=30)
        assert not any(f.done() for f in futures)
        assert [f.result() for f in futures] == [200, 200]


@pytest.mark.slow
def test_a_crash_is_confirmed_in_a_fresh_pool_worker(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2, env=POOLED)
    url = server.url("large", slow_original(server), "avif")
    workers = processes(server, b"imgproxy.workers.child")
    before = {pid: cpu_ticks(pid) for pid in workers}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, url, timeout=60)
        wait_until(lambda: any(cpu_ticks(pid) > before[pid] + 20 for pid in workers))
        busy = next(pid for pid in workers if cpu_ticks(pid) > before[pid] + 20)
        os.kill(busy, signal.SIGSEGV)  # not the input's fault: the second try succeeds
        response = pending.result()
    assert response.status_code == 200, response.text
    assert "confirming with a fresh worker" in server.logs()
    wait_until(lambda: len(processes(server, b"imgproxy.workers.child")) == 2)
    assert busy not in processes(server, b"imgproxy.workers.child")


@pytest.mark.slow
def test_a_dead_pool_is_503_json_then_serve_restarts_it(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2, env=POOLED)
    url = server.url("large", slow_original(server), "avif")
    [pool_pid] = processes(server, b"imgproxy.workers.pool")
    workers = processes(server, b"imgproxy.workers.child")
    before = {pid: cpu_ticks(pid) for pid in workers}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, url, timeout=60)
        wait_until(lambda: any(cpu_ticks(pid) > before[pid] + 20 for pid in workers))
        os.kill(pool_pid, signal.SIGKILL)
        response = pending.result()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable" and response.headers["retry-after"] == "1"
    wait_until(lambda: len(processes(server, b"imgproxy.workers.child")) == 2, timeout=30)
    star = add_original(server, corpus(STAR), "star")
    wait_until(lambda: httpx.get(server.url("thumbnail", star), timeout=60).status_code == 200, timeout=30)
    assert httpx.get(url, timeout=60).status_code == 200
    assert "the render pool exited" in server.logs()


def test_by_default_the_machine_has_one_render_worker_per_core(server_factory: Callable[..., Server]) -> None:
    # --workers sets server processes only: 3 of them still share one worker per core.
    server = server_factory(workers=3, env={"IMGPROXY_RENDER_MODE": "process"})
    cores = len(os.sched_getaffinity(0))
    wait_until(lambda: len(processes(server, b"imgproxy.workers.child")) == cores, timeout=30)
    assert len(processes(server, b"imgproxy.workers.pool")) == 1
    assert server.get("/healthz").json()["render_workers"] == cores


def test_stopping_serve_stops_the_pool_and_its_workers(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2, env=POOLED)
    star = add_original(server, corpus(STAR), "star")
    assert httpx.get(server.url("thumbnail", star), timeout=60).status_code == 200
    [pool_pid] = processes(server, b"imgproxy.workers.pool")
    workers = processes(server, b"imgproxy.workers.child")
    folder = Path(Path(f"/proc/{pool_pid}/cmdline").read_bytes().split(b"\0")[3].decode())
    assert (folder / "sock").exists()
    server.stop()
    assert server.proc.returncode == 0
    assert not any(alive(pid) for pid in [pool_pid, *workers]) and not folder.exists()
