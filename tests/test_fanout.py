"""Fan-out jobs: one decode, every missing variant, each exactly once, beside live traffic.

Real local stores, real render workers, a real server for the race.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import KEY, ROOT, Server, corpus, start_server

from imgproxy.config import load_settings
from imgproxy.errors import Undecodable
from imgproxy.fanout import fan_out, keys_of, targets_of
from imgproxy.metrics import RENDERS
from imgproxy.services import open_services

PHOTO = "exif/mei__Apple_iPhone_4.jpg"
LARGE = "large/mei__Issue_266.jpg"


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
        first = await fan_out(services.variants, "p", targets)
        assert sorted(first.rendered) == sorted(keys_of("p", targets)) and not first.failed
        assert renders() - before == 6
        for key in first.rendered:
            assert (tmp_path / "variants" / key).stat().st_size > 0
        # All there: existence checks only. With the original gone, a fetch would fail.
        (tmp_path / "originals" / "p.jpg").unlink()
        again = await fan_out(services.variants, "p", targets)
        assert len(again.skipped) == 6 and not again.rendered and not again.failed
        assert renders() - before == 6


async def test_fan_out_only_decodes_for_the_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "originals").mkdir()
    shutil.copyfile(corpus(PHOTO), tmp_path / "originals" / "p.jpg")
    async with open_services(settings(tmp_path)) as services:
        some = targets_of(services.presets, ["thumbnail"], ["webp"])
        await fan_out(services.variants, "p", some)
        every = targets_of(services.presets, ["thumbnail", "preview"], ["webp", "jpg"])
        result = await fan_out(services.variants, "p", every)
        assert len(result.rendered) == 3 and result.skipped == keys_of("p", some)


async def test_a_corrupt_original_fails_whole_and_stores_nothing(tmp_path: Path) -> None:
    (tmp_path / "originals").mkdir()
    (tmp_path / "originals" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    async with open_services(settings(tmp_path)) as services:
        targets = targets_of(services.presets, ["thumbnail", "web"], ["webp", "jpg"])
        with pytest.raises(Undecodable):
            await fan_out(services.variants, "bad", targets)
        with pytest.raises(Undecodable):  # remembered: not decoded again
            await fan_out(services.variants, "bad", targets)
    assert not [p for p in (tmp_path / "variants").rglob("*") if p.is_file() and p.suffix != ".lock"]


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
                return await fan_out(services.variants, id, targets)

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
