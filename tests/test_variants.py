"""The one render path in process: live misses, metadata and fan-outs share every step."""

from __future__ import annotations

from pathlib import Path

from test_failures import CRASH, PRESET, ScriptedRenderer
from test_fanout import Scripted

from imgproxy.cache.memory import MemoryTier
from imgproxy.presets import Preset
from imgproxy.render import Limits, Probed
from imgproxy.stores import Blob
from imgproxy.stores.local import LocalOriginals, LocalVariants
from imgproxy.urls import VariantRequest
from imgproxy.variants.fanout import Target
from imgproxy.variants.service import VariantService, keys_of


class CountingMemory(MemoryTier):
    """The memory tier, counting lookups by key."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.gets: dict[str, int] = {}

    def get(self, key: str) -> Blob | None:
        self.gets[key] = self.gets.get(key, 0) + 1
        return super().get(key)


def service(tmp: Path, renderer: object, memory: MemoryTier) -> VariantService:
    (tmp / "o").mkdir(exist_ok=True)
    (tmp / "o" / "x.jpg").write_bytes(b"\xff\xd8 fine")
    return VariantService(LocalOriginals(str(tmp / "o"), 1 << 20), LocalVariants(str(tmp / "v")), memory,
                          renderer, Limits())  # type: ignore[arg-type]


async def test_a_miss_checks_the_memory_tier_once(tmp_path: Path) -> None:
    memory = CountingMemory()
    v = service(tmp_path, ScriptedRenderer(), memory)
    key, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert tier == "render" and memory.gets == {key: 1}
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert tier == "memory" and memory.gets == {key: 2}


async def test_a_metadata_miss_checks_the_memory_tier_once(tmp_path: Path) -> None:
    class Probing(ScriptedRenderer):
        async def run(self, job, started=None):  # type: ignore[no-untyped-def]
            await super().run(job, started)
            return Probed({"width": 1, "height": 1})

    memory = CountingMemory()
    v = service(tmp_path, Probing(), memory)
    key, _, tier = await v.describe("x")
    assert tier == "render" and memory.gets == {key: 1}


class CrashingOnce(Scripted):
    """A fan-out's worker killed by a crash signal once; then it renders."""

    def __init__(self) -> None:
        super().__init__(fanout=None)
        self.crashes = [CRASH]

    async def run(self, job, started=None):  # type: ignore[no-untyped-def]
        if self.crashes:
            self.jobs.append(job)
            raise self.crashes.pop()
        return await super().run(job, started)


async def test_a_crashed_fan_out_is_confirmed_in_a_fresh_worker(tmp_path: Path) -> None:
    renderer = CrashingOnce()
    v = service(tmp_path, renderer, MemoryTier(1 << 20))
    targets: list[Target] = [(Preset(name=f"s{side}", width=side, height=side), "webp") for side in (100, 200)]
    result = await v.fan_out("x", targets)
    assert sorted(result.rendered) == sorted(keys_of("x", targets)) and not result.failed
    assert [type(job).__name__ for job in renderer.jobs] == ["FanoutJob", "FanoutJob"]
    assert len(v.failed) == 0  # not remembered against the original
