"""Animated GIF, WebP and APNG keep their frames, delays and loop count in WebP and GIF."""

import pytest
import pyvips
from conftest import corpus

from imgproxy.errors import TooLarge
from imgproxy.presets import Preset
from imgproxy.render import Limits, RenderJob, Source, configure, render

configure()
THUMB = Preset("t", 300, 300)
SQUARE = Preset("sq", 64, 64, fit="cover")


def source_frames(name: str) -> tuple[int, list[int], int]:
    """Frames, delays (ms) and loop count of an original."""
    path = corpus(f"animated/{name}")
    if name.endswith(".apng"):
        from PIL import Image

        with Image.open(path) as im:
            delays = []
            for i in range(im.n_frames):
                im.seek(i)
                delays.append(int(im.info["duration"]))
            return im.n_frames, delays, int(im.info.get("loop", 0))
    image = pyvips.Image.new_from_file(str(path), n=-1)
    return image.get("n-pages"), list(image.get("delay")), image.get("loop")


def rendered(name: str, preset: Preset, fmt: str) -> pyvips.Image:
    body = render(RenderJob(Source(path=str(corpus(f"animated/{name}"))), preset, fmt, Limits())).body
    return pyvips.Image.new_from_buffer(body, "", n=-1)


# Files whose frames all differ (encoders merge identical neighbours, adding their delays).
DISTINCT = ["libvips__dispose-background.gif", "sharp__animated-loop-3.webp", "mei__Animation_Lossy.webp",
            "weserv__dancing-banana.gif", "weserv__dancing_banana2.lossless.webp", "pillow__iss634.apng",
            "thumbor__SmallFullColourGIF.gif"]


@pytest.mark.parametrize("fmt", ["webp", "gif"])
@pytest.mark.parametrize("name", DISTINCT)
def test_frames_delays_and_loop_are_kept(name: str, fmt: str) -> None:
    frames, delays, loop = source_frames(name)
    out = rendered(name, THUMB, fmt)
    assert out.get("n-pages") == frames
    assert list(out.get("delay")) == delays
    assert out.get("loop") == loop
    assert out.height == out.get("page-height") * frames  # every frame resized identically
    # Cropped to a square, frame by frame (some become identical and merge; timing is kept).
    out = rendered(name, SQUARE, fmt)
    assert (out.width, out.get("page-height")) == (64, 64)
    assert out.get("n-pages") <= frames and sum(out.get("delay")) == sum(delays)
    assert out.get("loop") == loop


def test_identical_frames_merge_but_keep_the_timing() -> None:
    frames, delays, _ = source_frames("sharp__rotating-squares.gif")
    out = rendered("sharp__rotating-squares.gif", THUMB, "webp")
    assert out.get("n-pages") < frames
    assert sum(out.get("delay")) == sum(delays)


@pytest.mark.parametrize("fmt", ["jpg", "png", "avif"])
def test_outputs_that_cannot_animate_get_the_first_frame(fmt: str) -> None:
    body = render(RenderJob(Source(path=str(corpus("animated/libvips__cogs.gif"))), THUMB, fmt, Limits())).body
    out = pyvips.Image.new_from_buffer(body, "")
    assert not out.get_typeof("n-pages") or out.get("n-pages") == 1
    assert (out.width, out.height) == (85, 77)


def test_frame_limit_applies_to_apng() -> None:
    with pytest.raises(TooLarge) as info:
        render(RenderJob(Source(path=str(corpus("animated/pillow__iss634.apng"))), THUMB, "webp",
                         Limits(max_frames=10)))
    assert info.value.extra["limit"] == "max_frames"
