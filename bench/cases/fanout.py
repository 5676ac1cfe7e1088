"""Decode once, fan out: one ``FanoutJob`` per original vs one ``RenderJob`` per variant, and warm throughput.

- ``jpeg``: 20 camera JPEGs from the corpus at their own size (cycled if the
  corpus has fewer) x 3 presets (fit512, thumb200, fit1024) x 2 formats (webp, jpg);
- ``heic``: the corpus's iPhone HEIC files (decoded by pi-heif), same targets;
- ``warm``: ``imgproxy warm`` (default mode: fan-out jobs in worker processes,
  local stores) over 20 cold originals x the same 6 targets: originals/s, variants/s.

Both render ways run in one process on one thread, alternating per original so
load from other processes hits both alike. Ratio = per-variant seconds ÷ fan-out seconds.

The measuring half runs as its own process: ``python -m bench.cases.fanout FILES.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import servers
from bench.harness.context import Bench
from bench.harness.inputs import cold_files, photo_sources
from bench.harness.paths import BENCH_PRESETS, MAIN, TESTIMAGES
from bench.harness.quiet import CpuWatch

TARGET_PRESETS = ("fit512", "thumb200", "fit1024")
FORMATS = ("webp", "jpg")
ORIGINALS = 20
HEIC_GLOB = "heic/*.[hH][eE][iI][cC]"


def run(b: Bench) -> dict:
    smoke = b.profile.name == "smoke"
    jpegs = [str(p) for p in (b.inputs.photos if smoke else photo_sources())]
    jpegs = [jpegs[i % len(jpegs)] for i in range(3 if smoke else ORIGINALS)]
    heics = sorted(str(p) for p in TESTIMAGES.glob(HEIC_GLOB) if p.stat().st_size > 100_000)[: 1 if smoke else None]
    out = b.apart("bench.cases.fanout", str(b.url_list([json.dumps({"jpeg": jpegs, "heic": heics})])),
                  timeout=1200)
    out["warm"] = _warm(b, jpegs)
    print(f"[fan]  jpeg ×{out['jpeg']['ratio']}, heic ×{out['heic'].get('ratio')}, "
          f"warm {out['warm'].get('originals_per_s')} originals/s", file=sys.stderr, flush=True)
    return out


def _warm(b: Bench, sources: list[str]) -> dict:
    """``imgproxy warm`` over cold hard links of ``sources``: originals/s and variants/s."""
    root = b.work / "fanout-originals"
    cold_files(root / "w", [Path(source) for source in sources], len(sources))
    env = dict(os.environ, IMGPROXY_KEYS=servers.BENCH_KEY, IMGPROXY_PRESETS=str(BENCH_PRESETS),
               IMGPROXY_ORIGINALS=root.as_uri(), IMGPROXY_VARIANTS=(b.work / "fanout-variants").as_uri(),
               IMGPROXY_RENDER_MODE=b.render_mode)
    cmd = [sys.executable, "-m", "imgproxy", "warm", "--prefix", "w/", "--presets", ",".join(TARGET_PRESETS),
           "--formats", ",".join(FORMATS), "--json"]
    b.quiet()
    with CpuWatch() as cpu:
        done = subprocess.run(cmd, cwd=MAIN, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"ok": False, "why": (done.stdout + done.stderr)[-1000:]}
    summary = json.loads(done.stdout)
    return {"ok": True, "concurrency": "default (2 per render slot)", "render_mode": b.render_mode,
            "foreign_cpu": cpu.foreign, **{k: summary[k] for k in (
                "originals", "rendered", "skipped", "failed", "seconds", "originals_per_s", "variants_per_s")}}


def _measure(files: list[str]) -> dict:
    from imgproxy.presets import load_presets
    from imgproxy.render import Fanned, FanoutJob, Limits, RenderJob, Source, configure, render, run_job

    configure(1)
    presets = load_presets(BENCH_PRESETS)
    targets = tuple((presets[p], f) for p in TARGET_PRESETS for f in FORMATS)
    limits = Limits()
    fan = one = 0.0
    for i, path in enumerate(files):
        source = Source(data=Path(path).read_bytes())

        def fanned() -> None:
            result = run_job(FanoutJob(source, targets, limits))
            assert isinstance(result, Fanned) and all(not isinstance(r, Exception) for r in result.results)

        def singly() -> None:
            for preset, fmt in targets:
                render(RenderJob(source, preset, fmt, limits))

        ways = [fanned, singly] if i % 2 == 0 else [singly, fanned]
        for way in ways:
            started = time.perf_counter()
            way()
            took = time.perf_counter() - started
            if way is fanned:
                fan += took
            else:
                one += took
    return {"originals": len(files), "variants": len(files) * len(targets), "fanout_s": round(fan, 2),
            "per_variant_s": round(one, 2), "ratio": round(one / fan, 2) if fan else None}


def main(argv: list[str]) -> int:
    files = json.loads(Path(argv[0]).read_text())
    out = {"presets": list(TARGET_PRESETS), "formats": list(FORMATS), "jpeg": _measure(files["jpeg"]),
           "heic": _measure(files["heic"]) if files["heic"] else {}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
