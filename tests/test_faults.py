"""Faults against a running server in process mode: a killed worker, a full
disk, a burst past the queue, a client that hangs up."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, add_original, corpus, fill

PROCESS = {"IMGPROXY_RENDER_MODE": "process", "IMGPROXY_RENDER_THREADS": "1"}


def worker_pids(server: Server) -> list[int]:
    """The server's render worker processes, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == server.proc.pid and b"imgproxy.workers.child" in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def slow_original(server: Server, id: str = "slow") -> str:
    """A 20 MP AVIF: no shrink-on-load, so every variant decodes it in full."""
    return add_original(server, corpus("large/mei__Issue_649.avif"), id)


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(16) as executor:
        yield executor


@pytest.mark.slow
def test_sigkill_mid_render_is_503_and_the_next_request_succeeds(
    server_factory: Callable[..., Server], pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    server = server_factory(env=PROCESS)
    url = server.url("large", slow_original(server), "avif")  # seconds of work
    [pid] = worker_pids(server)
    before = cpu_ticks(pid)
    pending = pool.submit(httpx.get, url, timeout=60)
    wait_until(lambda: cpu_ticks(pid) > before + 20)  # 0.2 s into the render
    os.kill(pid, signal.SIGKILL)
    response = pending.result()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "unavailable"
    again = httpx.get(url, timeout=60)
    assert again.status_code == 200 and again.headers["content-type"] == "image/avif"
    [new_pid] = worker_pids(server)
    assert new_pid != pid
    assert "render worker" in server.logs()


@pytest.mark.slow
def test_a_worker_past_the_deadline_is_killed_and_504(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={**PROCESS, "IMGPROXY_RENDER_TIMEOUT": "0.5"})
    url = server.url("large", slow_original(server), "avif")
    [pid] = worker_pids(server)
    started = time.monotonic()
    response = httpx.get(url, timeout=60)
    assert response.status_code == 504 and response.json()["limit"] == "render_timeout"
    assert time.monotonic() - started < 2
    wait_until(lambda: len(worker_pids(server)) == 1 and worker_pids(server) != [pid])
    star = add_original(server, corpus("svg/linku__star.svg"), "star")
    assert httpx.get(server.url("thumbnail", star), timeout=60).status_code == 200
    assert server.get("/healthz").status_code == 200


@pytest.fixture
def full_disk(tmpfs: Callable[..., Path]) -> Path:
    """A 64 KiB tmpfs, filled up: every write gets ENOSPC."""
    mount = tmpfs("full", "64k")
    (mount / "variants" / ".locks").mkdir(parents=True)
    fill(mount)
    return mount / "variants"


def test_a_full_variant_store_still_serves_and_leaves_nothing(
    server_factory: Callable[..., Server], full_disk: Path
) -> None:
    server = server_factory(variants=full_disk, env=PROCESS)
    id = add_original(server, corpus("large/mei__Issue_266.jpg"), "photo")
    response = httpx.get(server.url("web", id, "webp"), timeout=60)
    assert response.status_code == 200 and response.content[8:12] == b"WEBP"
    assert response.headers["x-imgproxy-tier"] == "render"
    assert "variant store write failed" in server.logs()
    assert "No space left on device" in server.logs()
    leftovers = [p for p in full_disk.rglob("*") if p.is_file() and p.parent.name != ".locks"]
    assert leftovers == [], leftovers
    assert server.metric("imgproxy_store_errors_total") == 1


@pytest.mark.slow
def test_a_burst_past_the_queue_gets_fast_503s_then_service_resumes(
    server_factory: Callable[..., Server], pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    server = server_factory(env={**PROCESS, "IMGPROXY_RENDER_QUEUE": "2"})
    id = slow_original(server)
    urls = [server.url(preset, id, fmt) for preset in ("preview", "small", "web")
            for fmt in ("webp", "avif", "jpg", "png")]

    def timed(url: str) -> tuple[httpx.Response, float]:
        response = client.get(url)
        return response, response.elapsed.total_seconds()  # request sent -> response read

    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=len(urls))) as client:
        results = list(pool.map(timed, urls))
    ok = [r for r, _ in results if r.status_code == 200]
    refused = [(r, t) for r, t in results if r.status_code == 503]
    assert len(ok) + len(refused) == len(urls), [r.status_code for r, _ in results]
    assert 3 <= len(ok) <= 4 and len(refused) >= 8  # 1 rendering + 2 queued (+1 racing a finish)
    for response, seconds in refused:
        assert seconds < 0.5 and response.headers["retry-after"] == "1"
        assert response.json()["detail"] == "render queue is full"
    again = [httpx.get(url, timeout=120) for url in urls[:4]]
    assert [r.status_code for r in again] == [200] * 4
    assert server.get("/healthz").json()["renders_pending"] == 0


@pytest.mark.slow
def test_a_client_that_hangs_up_cancels_nothing_and_leaks_no_worker(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(env=PROCESS)
    url = server.url("large", slow_original(server), "avif")
    [pid] = worker_pids(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.3)  # hangs up mid-render
    response = httpx.get(url, timeout=60)  # joins the render the first one started
    assert response.status_code == 200
    assert server.metric("imgproxy_renders_total") == 1
    assert worker_pids(server) == [pid]
    health = server.get("/healthz").json()
    assert health["renders_pending"] == 0 and health["render_workers"] == 1


@pytest.mark.slow
def test_hits_are_never_blocked_behind_renders(
    server_factory: Callable[..., Server], pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    env = {**PROCESS, "IMGPROXY_RENDER_QUEUE": "1", "IMGPROXY_MEMORY_CACHE_MB": "0"}
    server = server_factory(env=env)
    id = slow_original(server)
    stored = server.url("thumbnail", add_original(server, corpus("svg/linku__star.svg"), "star"))
    assert httpx.get(stored).status_code == 200
    # The slowest render first (a full decode and an AVIF encode), the second queued behind it:
    # both places stay taken for seconds even on a busy machine.
    busy = [pool.submit(httpx.get, server.url("large", id, "avif"), timeout=120)]
    wait_until(lambda: server.get("/healthz").json()["renders_pending"] == 1)
    busy.append(pool.submit(httpx.get, server.url("large", id, "png"), timeout=120))
    wait_until(lambda: server.get("/healthz").json()["renders_pending"] == 2)
    # Refused while both places are surely taken: once the first render ends, a
    # third would be admitted (and this request would wait for it).
    refused = httpx.get(server.url("large", id, "webp"))
    assert refused.status_code == 503
    for _ in range(5):
        started = time.monotonic()
        hit = httpx.get(stored)
        assert hit.status_code == 200 and hit.headers["x-imgproxy-tier"] == "store"
        assert time.monotonic() - started < 0.5
    assert [f.result().status_code for f in busy] == [200, 200]


def test_process_mode_under_several_server_processes(server_factory: Callable[..., Server]) -> None:
    server = server_factory(workers=2, env=PROCESS)
    id = add_original(server, corpus("svg/linku__star.svg"), "star")
    assert httpx.get(server.url("thumbnail", id, "png"), timeout=60).status_code == 200
    assert server.get("/healthz").json()["render_workers"] == 1  # the machine's pool: RENDER_THREADS, not x 2
