"""Bare pyvips for the workload classes: the same work as our pipeline, written
directly against pyvips (and pi-heif for HEIC), in ``P`` plain processes.

``python -m bench.harness.bare_direct --spec SPEC.json --files FILES.json --processes P
--concurrency C --duration S`` prints the same summary as the HTTP client.
Concurrency C is C renders in flight: C // P threads in each of P processes
(at least one), as ours runs C requests over P server processes. A spec names
what one render does, read from our preset and :data:`imgproxy.formats.OUTPUTS`
by :func:`bench.cases.classes.spec_for`, so the two can never drift apart:

- decode: ``thumbnail`` from the file (shrink-on-load for JPEG), all frames
  (``[n=-1]``) when the output animates; HEIC through pi-heif, then
  ``thumbnail_image``;
- to sRGB with ``output_profile`` when the original's profile is not sRGB
  (the harness decides once per file, as our header probe does per request);
- flatten onto white when the output has no alpha; encode with the format's
  saver options and the preset's quality, ``keep="none"``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from typing import Any

from .loop import render_loop
from .stats import summary


def render(path: str, spec: dict[str, Any]) -> bytes:
    image, heif = _decoded(path, spec)  # pi-heif owns the decoded pixels: it must outlive the encode
    body: bytes = getattr(image, spec["saver"])(keep="none", **spec["options"])
    del heif
    return body


def _decoded(path: str, spec: dict[str, Any]) -> tuple[Any, Any]:
    """The image about to be encoded (lazy), and what must stay alive until it is."""
    import pyvips

    options: dict[str, Any] = {"height": spec["height"], "size": "down"}
    if spec["profile"]:
        options["output_profile"] = "srgb"
    heif = None
    if spec["decoder"] == "pi-heif":
        heif, image = _heif(path)
        image = image.thumbnail_image(spec["width"], **options)
    else:
        image = pyvips.Image.thumbnail(path + ("[n=-1]" if spec["frames"] else ""), spec["width"], **options)
    if image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    if spec["flatten"] and image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    return image, heif


def _heif(path: str) -> tuple[Any, Any]:
    import pi_heif
    import pyvips

    heif = pi_heif.open_heif(path, convert_hdr_to_8bit=True)
    primary = heif[heif.primary_index]
    width, height = primary.size
    bands = len(primary.mode.split(";")[0])
    data = primary.data
    if primary.stride != width * bands:
        row = width * bands
        data = b"".join(bytes(data[y * primary.stride : y * primary.stride + row]) for y in range(height))
    image = pyvips.Image.new_from_memory(data, width, height, bands, "uchar").copy(interpretation="srgb")
    icc = primary.info.get("icc_profile")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(icc))
    return heif, image


def profile(path: str, spec: dict[str, Any], repeat: int = 3) -> dict[str, float]:
    """Median ms of one render split in two: decode + resize (+ colour) into memory, then encode."""
    import statistics

    load_ms, encode_ms = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        image, keep = _decoded(path, spec)
        image = image.copy_memory()
        t1 = time.perf_counter()
        getattr(image, spec["saver"])(keep="none", **spec["options"])
        encode_ms.append((time.perf_counter() - t1) * 1000)
        load_ms.append((t1 - t0) * 1000)
        del keep
    return {"decode_resize_ms": round(statistics.median(load_ms), 1),
            "encode_ms": round(statistics.median(encode_ms), 1)}


def _child(spec: dict, files: list[str], counter: Any, threads: int, ready: Any, go: Any,
           deadline: Any, out: Any) -> None:
    from imgproxy.render import configure

    configure()
    render(files[0], spec)  # imports, encoder set-up: off the clock
    ready.release()
    go.wait()

    def next_index() -> int | None:
        with counter.get_lock():  # shared with the other processes
            i = counter.value
            counter.value += 1
        return i if i < len(files) else None

    out.put(render_loop(threads, deadline.value, next_index, lambda i: render(files[i], spec)))


def run(spec: dict, files: list[str], processes: int, concurrency: int, duration: float) -> dict:
    ctx = mp.get_context("spawn")  # a fresh libvips per process, as a server worker has
    processes = max(1, min(processes, concurrency))
    counter, ready, go = ctx.Value("i", 0), ctx.Semaphore(0), ctx.Event()
    deadline, out = ctx.Value("d", 0.0), ctx.Queue()
    split = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    children = [ctx.Process(target=_child, args=(spec, files, counter, n, ready, go, deadline, out))
                for n in split]
    for child in children:
        child.start()
    for _ in children:
        while not ready.acquire(timeout=0.5):
            if any(child.exitcode is not None for child in children):
                raise RuntimeError("a bare process exited before it was ready")
    start = time.perf_counter()
    deadline.value = time.monotonic() + duration
    go.set()
    parts = [out.get(timeout=duration + 600) for _ in children]
    elapsed = time.perf_counter() - start
    for child in children:
        child.join()
    latencies = [t for part in parts for t in part[0]]
    result: dict[str, Any] = dict(summary(latencies, elapsed, sum(p[1] for p in parts)))
    result["cpu_s"] = round(sum(p[2] for p in parts), 3)
    result["processes"] = processes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.bare_direct")
    parser.add_argument("--spec", required=True, help="JSON: what one render does")
    parser.add_argument("--files", required=True, help="JSON list of original paths, one per render")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="start no render after this")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.files) as f:
        files = json.load(f)
    json.dump(run(spec, files, args.processes, args.concurrency, args.duration), sys.stdout)


if __name__ == "__main__":
    main()
