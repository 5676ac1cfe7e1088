"""Fan-out jobs: one decode, every missing variant, each exactly once, beside live traffic.

Real local stores, real render workers, a real server for the race.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import KEY, ROOT, Server, corpus, start_server

from imgproxy.cache.failures import TIMEOUT_STRIKES
from imgproxy.cache.memory import NoMemoryTier
from imgproxy.config import load_settings
from imgproxy.errors import GatewayTimeout, ImgproxyError, RenderTimeout, Undecodable
from imgproxy.metrics import RENDERS
from imgproxy.presets import Preset
from imgproxy.render import Fanned, FanoutJob, Job, Limits, Rendered, Result
from imgproxy.stores.local import LocalOriginals, LocalVariants
from imgproxy.variants.fanout import Target, targets_of
from imgproxy.variants.service import VariantService, keys_of
from imgproxy.variants.services import open_services
from imgproxy.workers import ThreadRenderer

PHOTO = "exif/mei__Apple_iPhone_4.jpg"
LARGE = "large/mei__Issue_266.jpg"
SLOW = "large/mei__Issue_649.avif"  # a 20 MP AVIF: seconds of decoding


def settings(tmp: Path, **overrides: object):
    s = load_settings(environ={"IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
                               "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"),
                               "IMGPROXY_KEYS": KEY,
                               "IMGPROXY_ORIGINALS": (tmp / "originals").as_uri(),
                               "IMGPROXY_VARIANTS": (tmp / "variants").as_uri(),
                               "IMGPROXY_RENDER_THREADS": "1"})
    return dataclasses.replace(s, **overrides)


def renders() -> float:
    return sum(s.value for m in RENDERS.collect() for s in m.samples if s.name.endswith("_total"))


def leftovers(variants: Path) -> list[Path]:
    """Anything in the variant folder that is not a finished variant (temp files, partial writes)."""
    return [p for p in variants.rglob("*") if p.is_file() and p.suffix not in (".webp", ".avif", ".jpg", ".lock")]


async def test_fan_out_renders_what_is_missing_then_only_checks(tmp_path: Path) -> None:
    (tmp_path / "originals").mkdir()
    shutil.copyfile(corpus(PHOTO), tmp_path / "originals" / "p.jpg")
    async with open_services(settings(tmp_path)) as services:
        targets = targets_of(services.presets, ["thumbnail", "web"], ["webp", "avif", "jpg"])
        before = renders()
        first = await services.variants.fan_out("p", targets)
        assert sorted(first.rendered) == sorted(keys_of("p", targets)) and not first.failed
        assert renders() - before == 6
        for key in first.rendered:
            assert (tmp_path / "variants" / key).stat().st_size > 0
        # All there: existence checks only. With the original gone, a fetch would fail.
        (tmp_path / "originals" / "p.jpg").unlink()
        again = await services.variants.fan_out("p", targets)
        assert len(again.skipped) == 6 and not again.rendered and not again.failed
        assert renders() - before == 6


async def test_fan_out_only_decodes_for_the_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "originals").mkdir()
    shutil.copyfile(corpus(PHOTO), tmp_path / "originals" / "p.jpg")
    async with open_services(settings(tmp_path)) as services:
        some = targets_of(services.presets, ["thumbnail"], ["webp"])
        await services.variants.fan_out("p", some)
        every = targets_of(services.presets, ["thumbnail", "preview"], ["webp", "jpg"])
        result = await services.variants.fan_out("p", every)
        assert len(result.rendered) == 3 and result.skipped == keys_of("p", some)


async def test_a_corrupt_original_fails_whole_and_stores_nothing(tmp_path: Path) -> None:
    (tmp_path / "originals").mkdir()
    (tmp_path / "originals" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    async with open_services(settings(tmp_path)) as services:
        targets = targets_of(services.presets, ["thumbnail", "web"], ["webp", "jpg"])
        with pytest.raises(Undecodable):
            await services.variants.fan_out("bad", targets)
        with pytest.raises(Undecodable):  # remembered: not decoded again
            await services.variants.fan_out("bad", targets)
    assert not [p for p in (tmp_path / "variants").rglob("*") if p.is_file() and p.suffix != ".lock"]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_a_fan_out_worker_killed_from_outside_is_confirmed_in_a_fresh_worker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One SIGSEGV from outside (another process, an operator) during a warm-up is
    not the original's fault: the job runs again in a fresh worker and succeeds."""
    (tmp_path / "originals").mkdir()
    shutil.copyfile(corpus(SLOW), tmp_path / "originals" / "p.avif")
    caplog.set_level(logging.WARNING, "imgproxy")
    async with open_services(settings(tmp_path)) as services:
        [pid] = services.renderer.pids  # type: ignore[attr-defined]
        before = cpu_ticks(pid)
        targets = targets_of(services.presets, ["thumbnail", "web"], ["webp", "jpg"])
        job = asyncio.ensure_future(services.variants.fan_out("p", targets))
        deadline = time.monotonic() + 30
        while cpu_ticks(pid) < before + 20:  # into the decoder
            assert time.monotonic() < deadline and not job.done(), "the worker never got busy"
            await asyncio.sleep(0.02)
        os.kill(pid, signal.SIGSEGV)
        result = await job
        assert sorted(result.rendered) == sorted(keys_of("p", targets)) and not result.failed
        assert len(services.variants.failed) == 0  # not remembered against the original
        assert pid not in services.renderer.pids  # type: ignore[attr-defined]
    assert "confirming with a fresh worker" in caplog.text


@pytest.mark.slow
async def test_fan_out_racing_live_traffic_renders_each_variant_once(tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    originals.mkdir()
    ids = [f"race/{i}" for i in range(3)]
    for id in ids:
        (originals / "race").mkdir(exist_ok=True)
        shutil.copyfile(corpus(LARGE), originals / f"{id}.jpg")
    (tmp_path / "srv").mkdir()
    server: Server = start_server(tmp_path / "srv", originals=originals, variants=tmp_path / "variants",
                                  workers=2, env={"IMGPROXY_RENDER_THREADS": "1"})
    try:
        async with open_services(settings(tmp_path)) as services:
            targets = targets_of(services.presets, ["thumbnail", "web"], ["webp", "jpg"])
            urls = [server.url(p.name, id, f) for id in ids for p, f in targets] * 3
            before = renders()

            async def live() -> list[httpx.Response]:
                async with httpx.AsyncClient(timeout=120) as client:
                    return await asyncio.gather(*(client.get(u) for u in urls))

            async def warm(i: int, id: str):  # staggered: some leases are the server's first
                await asyncio.sleep(0.4 * i)
                return await services.variants.fan_out(id, targets)

            responses, *results = await asyncio.gather(live(), *(warm(i, id) for i, id in enumerate(ids)))
            ours = renders() - before
        assert {r.status_code for r in responses} == {200}
        theirs = server.metric("imgproxy_renders_total")
        print(f"\nfan-out vs live traffic: {len(urls)} requests, {ours:g} fan-out renders, "
              f"{theirs:g} server renders, {len(ids) * len(targets)} variants")
        assert ours + theirs == len(ids) * len(targets)
        assert sum(len(r.rendered) for r in results) == ours
        for result in results:
            assert not result.failed
        by_url = {}
        for url, r in zip(urls, responses):
            by_url.setdefault(url, set()).add(r.content)
        assert all(len(bodies) == 1 for bodies in by_url.values())
        for id in ids:
            for key in keys_of(id, targets):
                stored = (tmp_path / "variants" / key).read_bytes()
                assert stored in by_url[server.url(key.split("/")[0], id, key.rsplit(".", 1)[1])]
        assert leftovers(tmp_path / "variants") == []
    finally:
        server.stop()


BODY = Rendered(body=b"RIFF....WEBP", width=1, height=1)
#: Four sizes in two formats, like a camera photo's warm-up, smallest first.
SIZES = [Preset(name=f"s{side}", width=side, height=side) for side in (300, 800, 2000, 4000)]
EIGHT: list[Target] = [(p, f) for p in reversed(SIZES) for f in ("avif", "webp")]


def service(tmp: Path, renderer: object) -> VariantService:
    (tmp / "o").mkdir(exist_ok=True)
    (tmp / "o" / "p.jpg").write_bytes(b"\xff\xd8 a camera photo")
    return VariantService(LocalOriginals(str(tmp / "o"), 1 << 20), LocalVariants(str(tmp / "v")), NoMemoryTier(),
                          renderer, Limits())  # type: ignore[arg-type]


class Scripted:
    """A renderer whose fan-out jobs and lone renders each answer as told; it keeps every job."""

    def __init__(self, fanout: ImgproxyError | None, lone: ImgproxyError | None = None) -> None:
        self.fanout, self.lone = fanout, lone
        self.jobs: list[Job] = []
        self.pending, self.workers = 0, 1

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        yield

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        self.jobs.append(job)
        error = self.fanout if isinstance(job, FanoutJob) else self.lone
        if error is not None:
            raise error
        return Fanned(tuple(BODY for _ in job.targets)) if isinstance(job, FanoutJob) else BODY


async def test_a_fan_out_has_render_timeout_for_each_variant(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[Job] = []

    def slow(job: Job) -> Result:  # 0.3 s a variant: each fits in 0.5 s, all eight do not
        jobs.append(job)
        made = len(job.targets) if isinstance(job, FanoutJob) else 1
        time.sleep(0.3 * made)
        return Fanned((BODY,) * made) if isinstance(job, FanoutJob) else BODY

    monkeypatch.setattr("imgproxy.workers.threads.run_job", slow)
    v = service(tmp_path, ThreadRenderer(1, 4, timeout=0.5))
    result = await v.fan_out("p", EIGHT)
    assert sorted(result.rendered) == sorted(keys_of("p", EIGHT)) and not result.failed
    assert [type(job) for job in jobs] == [FanoutJob]  # one job, one decode: no fallback was needed


async def test_a_fan_out_timeout_does_not_blame_an_original_that_renders_alone(tmp_path: Path) -> None:
    renderer = Scripted(fanout=RenderTimeout("render took longer than 240s", limit="render_timeout"))
    v = service(tmp_path, renderer)
    for sizes in (EIGHT[:4], EIGHT[4:]):  # twice: two fan-out timeouts within the strike window
        result = await v.fan_out("p", sizes)
        assert sorted(result.rendered) == sorted(keys_of("p", sizes)) and not result.failed
    assert [type(job).__name__ for job in renderer.jobs] == ["FanoutJob"] + ["RenderJob"] * 4 + [
        "FanoutJob"] + ["RenderJob"] * 4
    # No strike was left against the original: one more timeout is still below the limit.
    original = await v.originals.fetch("p")
    v.failed.remember(original.identity, "any", RenderTimeout("slow", limit="render_timeout"))
    v.failed.check(original.identity, "any")
    assert len(v.failed) == 0


async def test_a_lone_render_past_render_timeout_is_the_originals(tmp_path: Path) -> None:
    slow = RenderTimeout("render took longer than 30s", limit="render_timeout")
    renderer = Scripted(fanout=slow, lone=slow)
    v = service(tmp_path, renderer)
    for _ in range(TIMEOUT_STRIKES):
        result = await v.fan_out("p", EIGHT)
        # The cheapest alone ran out of time: the other seven were not tried.
        assert isinstance(result.failed[keys_of("p", [(SIZES[0], "webp")])[0]], RenderTimeout)
        assert sum(type(e) is GatewayTimeout for e in result.failed.values()) == 7
        assert renderer.jobs[-1].preset is SIZES[0] and renderer.jobs[-1].fmt == "webp"  # type: ignore[union-attr]
    runs = len(renderer.jobs)
    with pytest.raises(GatewayTimeout, match="ran past render_timeout 2 times"):
        await v.fan_out("p", EIGHT)
    assert len(renderer.jobs) == runs  # remembered: not rendered again
