"""AVIF against WebP per workload class: time, and bytes at visually similar quality.

- *Time:* AVIF time ÷ WebP time is read from the class misses of the same run
  (ours, req/s and CPU ms per request), so it is the cost a user's miss pays.
- *Bytes:* per class, the pipeline's output before encoding (its first source,
  the class's preset; the first frame of an animation) is the reference. Our
  AVIF at the preset's quality and each effort of ``EFFORTS`` is scored by
  SSIM (luma, Gaussian σ 1.5, as scikit-image's ``structural_similarity``; the
  metric of ``quality = "auto"``: :mod:`imgproxy.render.autoquality`); WebP is
  swept over ``WEBP_SWEEP`` and its bytes interpolated (log bytes linear in
  SSIM) at the SSIM AVIF reached. AVIF ÷ WebP below 1 means AVIF is smaller at
  equal SSIM. The default effort (``IMGPROXY_AVIF_EFFORT``) is judged by bytes
  saved per unit of encode time across efforts.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

from bench.harness.context import Bench
from bench.harness.stats import at_ssim
from bench.harness.workload import WorkClass, classes

EFFORTS = (0, 2, 4, 6)
SMOKE_EFFORTS = (2, 4)
WEBP_SWEEP = (50, 60, 70, 75, 80, 85, 90, 95)
SMOKE_SWEEP = (60, 80, 95)
REPEAT = 2  # encodes per point; the faster is kept (the machine is shared)


def run(b: Bench) -> dict:
    from imgproxy.formats import OUTPUTS
    from imgproxy.render import configure

    configure()
    smoke = b.profile.name == "smoke"
    out: dict = {"default_effort": OUTPUTS["avif"].options["effort"],
                 "efforts": list(SMOKE_EFFORTS if smoke else EFFORTS),
                 "metric": "luma SSIM (Gaussian σ 1.5, as scikit-image structural_similarity)", "classes": {}}
    b.quiet()
    for cls in classes(b):
        out["classes"][cls.name] = _one(cls, smoke)
        row = out["classes"][cls.name]
        print(f"[avif] {cls.name:8} " + "  ".join(
            f"e{e}: {r['bytes_vs_webp']}× webp, {r['ms']:.0f} ms" for e, r in row["avif"].items()),
            file=sys.stderr, flush=True)
    return out


def _one(cls: WorkClass, smoke: bool) -> dict:
    from imgproxy.render import Limits
    from imgproxy.render.autoquality import luma, luma_of, ssim
    from imgproxy.render.encode import encode_at
    from imgproxy.render.jobs import Source
    from imgproxy.render.plan import make_plan
    from imgproxy.render.source import probe
    from imgproxy.render.steps import PIPELINE, load

    preset = cls.load_preset()
    header, source = probe(Source(path=str(cls.sources[0])), Limits())
    plan = make_plan(header, preset, "avif", Limits())  # one frame, alpha kept
    image = load(source, header, plan)
    for step in PIPELINE:
        image = step(image, plan)
    image = image.copy_memory()
    reference = luma(image)

    def point(fmt: str, quality: int, effort: int | None) -> dict:
        p = dataclasses.replace(plan, fmt=fmt, effort=effort)
        best = math.inf
        for _ in range(REPEAT):
            start = time.perf_counter()
            body = encode_at(image, p, quality)
            best = min(best, time.perf_counter() - start)
        return {"q": quality, "bytes": len(body), "ms": round(best * 1000, 1),
                "ssim": round(ssim(reference, luma_of(body)), 5)}

    webp = [point("webp", q, None) for q in (SMOKE_SWEEP if smoke else WEBP_SWEEP)]
    webp_q = preset.quality["webp"]
    out = {"size": f"{image.width}×{image.height}", "avif_q": plan.quality, "webp_q": webp_q,
           "webp_preset": point("webp", webp_q, None), "webp_sweep": webp, "avif": {}}
    for effort in SMOKE_EFFORTS if smoke else EFFORTS:
        row = point("avif", plan.quality, effort)
        at = at_ssim(webp, row["ssim"])
        row["webp_bytes_at_ssim"] = round(at[0]) if at else None
        row["webp_ms_at_ssim"] = round(at[1], 1) if at else None
        row["bytes_vs_webp"] = round(row["bytes"] / at[0], 3) if at else None
        row["ms_vs_webp"] = round(row["ms"] / at[1], 2) if at else None
        if at is None:
            row["why"] = "outside the WebP sweep's SSIM range"
        out["avif"][str(effort)] = row
    return out
