"""The failed-decode memo: an original that failed because of its input is not
decoded again until it changes; failures that are not its fault are retried."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, add_original, corpus

from imgproxy.cache.failures import REMEMBER_SECONDS, TIMEOUT_SECONDS, TIMEOUT_WINDOW, FailedOriginals
from imgproxy.cache.memory import NoMemoryTier
from imgproxy.errors import (
    GatewayTimeout,
    ImgproxyError,
    RenderTimeout,
    TooLarge,
    Unavailable,
    Undecodable,
    Unsupported,
)
from imgproxy.presets import Preset
from imgproxy.render import Limits, Rendered, RenderJob
from imgproxy.stores.local import LocalOriginals, LocalVariants
from imgproxy.urls import VariantRequest
from imgproxy.variants.service import VariantService

PRESET = Preset(name="thumbnail", width=100, height=100)


class ScriptedRenderer:
    """Fails with the queued errors, then renders a fixed body; counts runs."""

    def __init__(self, *errors: ImgproxyError) -> None:
        self.errors = list(errors)
        self.runs = 0
        self.pending = 0
        self.workers = 1

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        yield

    async def run(self, job: RenderJob, started: Callable[[], object] | None = None) -> Rendered:
        if started is not None:
            started()
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)
        return Rendered(body=b"RIFF....WEBP", width=1, height=1)

    async def render(self, job: RenderJob) -> Rendered:
        return await self.run(job)

    async def aclose(self) -> None:
        pass


def variants(tmp_path: Path, renderer: ScriptedRenderer) -> VariantService:
    (tmp_path / "o").mkdir(exist_ok=True)
    return VariantService(LocalOriginals(str(tmp_path / "o"), 1 << 20), LocalVariants(str(tmp_path / "v")),
                    NoMemoryTier(), renderer, Limits())


async def test_an_undecodable_variant_is_decoded_once_until_the_original_changes(tmp_path: Path) -> None:
    renderer = ScriptedRenderer(Undecodable("broken frame"))
    v = variants(tmp_path, renderer)
    original = tmp_path / "o" / "x.gif"
    original.write_bytes(b"GIF89a...")
    for _ in range(3):
        with pytest.raises(Undecodable):
            await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert renderer.runs == 1
    # Another variant may decode less (the first frame only): it is tried.
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "jpg"), PRESET)
    assert tier == "render" and renderer.runs == 2
    renderer.errors.append(Undecodable("broken frame"))
    with pytest.raises(Undecodable):
        await v.serve(VariantRequest("thumbnail", "x", "png"), PRESET)
    original.write_bytes(b"a new upload")  # new size and mtime: a new identity
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "png"), PRESET)
    assert tier == "render" and renderer.runs == 4


CRASH = Undecodable("the original crashed its render worker", signal="SIGSEGV")


@pytest.mark.parametrize(("errors", "runs"), [((Unsupported("not an image"),), 1), ((CRASH, CRASH), 2)])
async def test_unsupported_and_crashing_originals_are_refused_for_every_variant(
    tmp_path: Path, errors: tuple[ImgproxyError, ...], runs: int
) -> None:
    renderer = ScriptedRenderer(*errors)
    v = variants(tmp_path, renderer)
    (tmp_path / "o" / "x.jpg").write_bytes(b"?")
    for fmt in ("webp", "png", "avif", "jpg"):
        with pytest.raises(type(errors[0])) as info:
            await v.serve(VariantRequest("thumbnail", "x", fmt), PRESET)
        assert info.value.detail == errors[0].detail
    assert renderer.runs == runs


async def test_one_crash_is_confirmed_in_a_fresh_worker_before_it_is_blamed_on_the_input(tmp_path: Path) -> None:
    """A SIGSEGV from outside (another process, an operator) is not the original's fault."""
    renderer = ScriptedRenderer(CRASH)
    v = variants(tmp_path, renderer)
    (tmp_path / "o" / "x.jpg").write_bytes(b"fine")
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert tier == "render" and renderer.runs == 2
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "png"), PRESET)
    assert tier == "render" and renderer.runs == 3 and len(v.failed) == 0


async def test_repeated_render_timeouts_are_answered_at_once_for_a_while(tmp_path: Path) -> None:
    now = [0.0]
    renderer = ScriptedRenderer(RenderTimeout("slow", limit="render_timeout"),
                                RenderTimeout("slow", limit="render_timeout"))
    v = variants(tmp_path, renderer)
    v.failed = FailedOriginals(clock=lambda: now[0])
    (tmp_path / "o" / "x.png").write_bytes(b"1 x 99,000,000")
    for fmt in ("webp", "png"):  # two strikes, each a real render
        with pytest.raises(RenderTimeout):
            await v.serve(VariantRequest("thumbnail", "x", fmt), PRESET)
    assert renderer.runs == 2
    for fmt in ("webp", "avif", "jpg"):  # then every variant at once
        with pytest.raises(GatewayTimeout) as info:
            await v.serve(VariantRequest("thumbnail", "x", fmt), PRESET)
        assert info.value.status == 504 and info.value.extra == {"limit": "render_timeout"}
    assert renderer.runs == 2
    now[0] += TIMEOUT_SECONDS + 1  # and after a while it is tried again
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "jpg"), PRESET)
    assert tier == "render" and renderer.runs == 3


def test_timeouts_far_apart_never_add_up() -> None:
    now = [0.0]
    memo = FailedOriginals(clock=lambda: now[0])
    for _ in range(5):
        memo.remember("x:1:1", "k", RenderTimeout("slow"))
        now[0] += TIMEOUT_WINDOW + 1
    memo.check("x:1:1", "k")
    memo.remember("x:1:1", "k", GatewayTimeout("waited for a worker"))  # load, not the input
    memo.remember("x:1:1", "k", GatewayTimeout("waited for a worker"))
    memo.check("x:1:1", "k")


def test_remembered_failures_expire() -> None:
    now = [0.0]
    memo = FailedOriginals(clock=lambda: now[0])
    memo.remember("x:1:1", "k", Undecodable("broken"))
    now[0] += REMEMBER_SECONDS - 1
    with pytest.raises(Undecodable):
        memo.check("x:1:1", "k")
    now[0] += 2
    memo.check("x:1:1", "k")
    assert len(memo) == 0


@pytest.mark.parametrize("error", [Unavailable("worker died"), GatewayTimeout("slow")])
async def test_failures_that_are_not_the_inputs_fault_are_retried(tmp_path: Path, error: ImgproxyError) -> None:
    renderer = ScriptedRenderer(error)
    v = variants(tmp_path, renderer)
    (tmp_path / "o" / "x.jpg").write_bytes(b"fine")
    with pytest.raises(type(error)):
        await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert tier == "render" and renderer.runs == 2


async def test_too_large_is_remembered_per_variant(tmp_path: Path) -> None:
    renderer = ScriptedRenderer(TooLarge("big", limit="max_output_pixels"))
    v = variants(tmp_path, renderer)
    (tmp_path / "o" / "x.jpg").write_bytes(b"fine")
    for _ in range(2):
        with pytest.raises(TooLarge):
            await v.serve(VariantRequest("thumbnail", "x", "png"), PRESET)
    _, _, tier, _ = await v.serve(VariantRequest("thumbnail", "x", "webp"), PRESET)
    assert tier == "render" and renderer.runs == 2


def test_the_memo_is_bounded() -> None:
    memo = FailedOriginals(size=3)
    for n in range(10):
        memo.remember(f"id{n}:1:1", "k", Undecodable("x"))
    assert len(memo) == 3
    memo.check("id0:1:1", "k")  # evicted: tried again
    with pytest.raises(Undecodable) as info:
        memo.check("id9:1:1", "k")
    assert info.value.detail == "x"


def test_a_replaced_broken_upload_is_served(server: Server) -> None:
    target = server.originals / "upload.jpg"
    target.write_bytes(corpus("corrupt/sharp__corrupt-header.jpg").read_bytes())
    url = server.url("thumbnail", "upload", "webp")
    first, second = httpx.get(url, timeout=60), httpx.get(url, timeout=60)
    assert first.status_code == second.status_code == 422
    assert first.json() == second.json()
    target.write_bytes(corpus("large/mei__Issue_266.jpg").read_bytes())
    os.utime(target, ns=(1, 1))  # a different mtime even on a coarse clock
    assert httpx.get(url, timeout=60).status_code == 200


def test_the_memo_keeps_nothing_of_the_failed_render() -> None:
    """A remembered failure must not keep the render's frames (and the original's bytes) alive."""
    import gc
    import weakref

    class Original:
        pass

    memo = FailedOriginals()

    def render(original: Original) -> None:
        raise Undecodable("broken", reason="bad huffman table")

    original = Original()
    alive = weakref.ref(original)
    try:
        render(original)
    except Undecodable as exc:
        memo.remember("x:1:1", "k", exc)
    del original
    gc.collect()
    assert alive() is None
    with pytest.raises(Undecodable) as info:
        memo.check("x:1:1", "k")
    assert info.value.detail == "broken" and info.value.extra == {"reason": "bad huffman table"}


def _render_workers(server: Server) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == server.proc.pid and b"imgproxy.workers.child" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_a_sigsegv_from_outside_is_not_blamed_on_the_original(server_factory: Callable[..., Server]) -> None:
    """Workers stopped, a render sent to one, SIGSEGV from outside, workers continued:
    the crash is confirmed in a fresh worker, which renders it."""
    import signal
    import threading
    import time

    server = server_factory(env={"IMGPROXY_RENDER_THREADS": "1"})
    add_original(server, corpus("large/mei__Issue_266.jpg"), "victim")
    workers = _render_workers(server)
    assert len(workers) == 1
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(httpx.get(server.url("thumbnail", "victim"), timeout=60)))
    thread.start()
    time.sleep(1.0)  # the job is in the stopped worker's socket
    for pid in workers:
        os.kill(pid, signal.SIGSEGV)
        os.kill(pid, signal.SIGCONT)
    thread.join(60)
    assert answers[0].status_code == 200, answers[0].text
    assert httpx.get(server.url("thumbnail", "victim", "png"), timeout=60).status_code == 200
    assert "confirming with a fresh worker" in server.logs()
