"""Where a miss's render time goes, on one thread in one process.

- ``render``: ``imgproxy.render.render`` as a render thread or worker runs it;
- ``no_icc``: the same steps and encoder with ``thumbnail`` never asked to
  colour-manage (before db3f229 ``render`` ran an lcms transform on every
  image, which cost 2.4x on a 2 MP JPEG; this column keeps that visible);
- ``decode_resize``: only the ``thumbnail`` load + resize, no encode.

The measuring half runs as its own process: ``python -m bench.cases.breakdown FILES.json FORMATS``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from bench.harness.context import PRESET, Bench
from bench.harness.paths import BENCH_PRESETS


def run(b: Bench) -> dict:
    """Median ms per photo, one thread: our render vs without colour management (:func:`main`)."""
    files = [str(path) for path in b.inputs.photos]
    out = b.apart("bench.cases.breakdown", str(b.url_list([json.dumps(files)])), ",".join(b.profile.formats),
                  timeout=600)
    print(f"[cost] {out}", file=sys.stderr, flush=True)
    return out


def _no_icc(path: str, preset, fmt: str) -> bytes:
    import pyvips

    from imgproxy.render import Limits, Source
    from imgproxy.render.encode import encode
    from imgproxy.render.plan import make_plan
    from imgproxy.render.source import probe
    from imgproxy.render.steps import PIPELINE

    header, _ = probe(Source(path=path), Limits())
    plan = make_plan(header, preset, fmt, Limits())
    image = pyvips.Image.thumbnail(path, plan.width, height=plan.height, size="down")
    for step in PIPELINE:
        image = step(image, plan)
    return encode(image, plan)


def _decode_resize(path: str, preset, fmt: str) -> bytes:
    import pyvips

    image = pyvips.Image.thumbnail(path, preset.width, height=preset.height, size="down")
    return image.copy_memory().width.to_bytes(4, "little")  # forces the pixels


def main() -> None:
    from imgproxy.presets import load_presets
    from imgproxy.render import Limits, RenderJob, Source, configure, render

    files = json.loads(Path(sys.argv[1]).read_text())
    formats = sys.argv[2].split(",")
    preset = load_presets(BENCH_PRESETS)[PRESET]
    configure()
    ways = {
        "render": lambda p, f: render(RenderJob(Source(path=p), preset, f, Limits())).body,
        "no_icc": lambda p, f: _no_icc(p, preset, f),
        "decode_resize": lambda p, f: _decode_resize(p, preset, f),
    }
    out: dict = {}
    for fmt in formats:
        names = [n for n in ways if n != "decode_resize" or fmt == formats[0]]  # format-free
        for name in names:
            ways[name](files[0], fmt)  # warm-up: the first encode sets up the codec
        times: dict[str, list[float]] = {name: [] for name in names}
        for path in files:  # ways interleaved per file, so drift hits them alike
            for name in names:
                t0 = time.perf_counter()
                ways[name](path, fmt)
                times[name].append(time.perf_counter() - t0)
        out[fmt] = {f"{name}_ms": round(1000 * statistics.median(t), 1) for name, t in times.items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
