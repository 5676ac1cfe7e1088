"""Originals in flight (stores/spool.py): streamed to a file as they arrive, under a byte budget.

Real servers on 127.0.0.1 with an HTTP origin (tests/origins.py) serving distinct
16 MiB originals; the server's RSS is sampled while 30 misses pile up.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Server, read_only
from test_corpus import tree_rss

PILE = 30  # concurrent misses, each on a distinct 16 MiB original


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Peaks(threading.Thread):
    """Peak RSS of the server process alone, and of it with its render workers."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.own, self.tree, self.done = pid, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.own, self.tree = max(self.own, _rss(self.pid)), max(self.tree, tree_rss(self.pid))


async def _pile_up(server: Server, start: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=PILE)) as client:
        return await asyncio.gather(*(client.get(server.url("thumbnail", f"big-{n}"))
                                      for n in range(start, start + PILE)))


def _server(server_factory: Callable[..., Server], origin: str, **env: str) -> Server:
    return server_factory(originals=f"{origin}/img/", env={
        "IMGPROXY_HTTP_ALLOW_PRIVATE": "1", "IMGPROXY_RENDER_THREADS": "2", **env})


@pytest.mark.slow
async def test_a_pile_up_of_large_misses_keeps_server_memory_bounded(
        server_factory: Callable[..., Server], origin: str) -> None:
    server = _server(server_factory, origin)
    async with httpx.AsyncClient(timeout=60) as client:
        for n in range(2):  # warm up: connections, workers (one at a time: no pile-up yet)
            assert (await client.get(server.url("thumbnail", f"big-{n}"))).status_code == 422
    own, tree = _rss(server.proc.pid), tree_rss(server.proc.pid)
    peaks = Peaks(server.proc.pid)
    peaks.start()
    responses = await _pile_up(server, 1000)
    peaks.done.set()
    peaks.join()
    statuses = sorted({r.status_code for r in responses})
    print(f"{PILE} concurrent misses on distinct 16 MiB originals: server RSS {own >> 20} -> peak "
          f"{peaks.own >> 20} MiB, with workers {tree >> 20} -> {peaks.tree >> 20} MiB; statuses {statuses}")
    assert statuses == [422]  # junk, refused at the header: every one downloaded whole
    # Before streaming to a spool (chunks, a joined copy, and uvloop's socket
    # queues): the tree went from 158 to 1121 MiB.
    assert peaks.own - own < 64 * 2**20
    assert peaks.tree - tree < 96 * 2**20


@pytest.mark.slow
async def test_originals_over_the_byte_budget_get_503_with_retry_after(
        server_factory: Callable[..., Server], origin: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = _server(server_factory, origin, IMGPROXY_ORIGINALS_BUDGET_MB="48",
                     IMGPROXY_MAX_SOURCE_BYTES=str(32 << 20), IMGPROXY_SPOOL_DIR=str(spool))
    responses = await _pile_up(server, 2000)
    refused = [r for r in responses if r.status_code == 503]
    print(f"budget 48 MiB, {PILE} x 16 MiB: {len(refused)} refused with 503")
    assert {r.status_code for r in responses} == {422, 503}
    assert all(r.headers["retry-after"] == "1" and r.json()["limit"] == "originals_budget_mb" for r in refused)
    assert not list(spool.rglob("orig-*"))  # every spool file removed once its render ended
    # The budget came back: one at a time, all of them fit.
    async with httpx.AsyncClient(timeout=60) as client:
        for n in range(3):
            assert (await client.get(server.url("thumbnail", f"big-{3000 + n}"))).status_code == 422


@pytest.fixture
def small_spool(tmpfs: Callable[..., Path]) -> Path:
    """An 8 MiB tmpfs: a 16 MiB original fills it up (ENOSPC) half way."""
    return tmpfs("spool", "8m")


async def test_a_full_or_read_only_spool_is_503_with_retry_after_and_counted(
        server_factory: Callable[..., Server], origin: str, small_spool: Path) -> None:
    server = _server(server_factory, origin, IMGPROXY_SPOOL_DIR=str(small_spool))
    async with httpx.AsyncClient(timeout=60) as client:
        full = await asyncio.gather(*(client.get(server.url("thumbnail", f"big-{4000 + n}")) for n in range(6)))
        assert [r.status_code for r in full] == [503] * 6, [r.text for r in full]
        assert all(r.headers["retry-after"] == "1" and r.json()["reason"] == "full" for r in full)
        assert not list(small_spool.rglob("orig-*"))  # each partial spool file removed
        assert (await client.get(server.url("thumbnail", "photo"))).status_code == 200  # the space came back
        await asyncio.to_thread(read_only, small_spool)
        unwritable = await client.get(server.url("thumbnail", "big-4100"))
        assert unwritable.status_code == 503 and unwritable.json()["reason"] == "unwritable"
    assert server.metric('imgproxy_disk_errors_total{folder="spool",reason="full"}') == 6
    assert server.metric('imgproxy_disk_errors_total{folder="spool",reason="unwritable"}') == 1
    assert f"spool folder {small_spool} holds 8 MiB, less than IMGPROXY_ORIGINALS_BUDGET_MB" in server.logs()


def test_the_default_spool_is_not_a_dev_shm_smaller_than_the_budget(tmp_path: Path) -> None:
    """Docker's 64 MiB /dev/shm against a larger budget: the temp folder instead."""
    import tempfile

    from imgproxy.stores.spool import Spool, _size

    shm = _size("/dev/shm")
    if shm is None or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm here")
    assert Spool(shm + 1).parent == tempfile.gettempdir()
    assert Spool(shm).parent == "/dev/shm"


def test_the_render_pool_folder_is_chosen_by_the_spool_s_rule() -> None:
    """One choice of /dev/shm or the temp folder, for the spool and the pool's private folder."""
    from imgproxy.stores.spool import memory_folder
    from imgproxy.workers.pool import PoolKeeper

    keeper = PoolKeeper(1, 0, 512, 10, 1)  # not entered: no process started
    try:
        assert str(keeper.folder.parent) == memory_folder()
    finally:
        keeper.folder.rmdir()
