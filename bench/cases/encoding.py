"""Encoding efficiency: bytes at equal SSIM against sharp, the AVIF effort curve, ``quality = "auto"``.

``make bench`` runs it as the ``encoding`` case (the light sweep below);
``python -m bench --cases encoding --update --long`` runs this section alone
with the full sweep and merges it into bench/results/latest.json and
docs/BENCHMARKS.md. Every figure comes from one run on the same inputs:

- **References:** corpus photos at least 1200 px on their long side, resized
  to 1200 px, and generated AI-tool-like PNGs (flat shapes, smooth gradients,
  soft blobs), each written once as PNG: both encoders start from the same
  pixels.
- **Sweep:** each reference is encoded at every quality of ``SWEEP`` by our
  encoder (:func:`imgproxy.render.encode.encode_at`, our settings) and by
  sharp (npm, installed into ``bench/.sharp``; its defaults, and mozjpeg for
  context), one libvips thread each. The metric is luma SSIM (the one
  ``quality = "auto"`` uses) of the decoded output against the reference.
- **Bytes at equal SSIM:** at the SSIM our encoder reaches at a preset's
  quality, sharp's bytes (and time) are interpolated on its own sweep (log
  bytes linear in SSIM between neighbours); ours ÷ sharp is the geometric
  mean over photos.
- **AVIF effort:** our AVIF at efforts 2, 3 and 4 at the default quality.
- **Auto:** the target is the lowest SSIM the format's default quality
  reaches over the photos (so the fixed quality guarantees it on every
  photo); auto then picks a quality per image for that target.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness.context import Bench
from bench.harness.paths import MAIN, TESTIMAGES
from bench.harness.stats import at_ssim, geomean
from bench.harness.synthetic import SYNTHETIC

SHARP_DIR = MAIN / "bench" / ".sharp"
SHARP_JS = Path(__file__).with_name("sharp_encode.js")
SHARP_VERSION = "0.35"
PHOTOS = ("exif/bimg__test_exif_full.jpg", "exif/exifsamples__87_OSError.jpg", "exif/exifsamples__canon_hdr_YES.jpg",
          "exif/mei__Apple_iPhone_4.jpg", "exif/mei__Olympus_PEN_E-P3.jpg", "exif/mei__Samsung_SM-J327T1.jpg",
          "large/mei__Issue_266.jpg", "color/sharp__concert.jpg")
SWEEP = {"jpg": (50, 60, 70, 80, 85, 90, 95), "webp": (50, 60, 70, 80, 85, 90, 95), "avif": (35, 45, 55, 60, 65, 75)}
SMOKE_SWEEP = {"jpg": (60, 80, 90), "webp": (60, 80, 90), "avif": (45, 55, 65)}
#: ``make bench``'s sweep (``python -m bench --long`` runs the full one):
#: every photo (``quality = "auto"``'s target is the lowest SSIM over them, so fewer photos would move
#: the published targets) at four qualities a format besides the operating points.
LIGHT_SWEEP = {"jpg": (50, 70, 85, 95), "webp": (50, 70, 85, 95), "avif": (35, 50, 65, 75)}
#: Operating points: the default quality and the ``web`` preset's.
POINTS = {"jpg": (82, 90), "webp": (80, 90), "avif": (55, 65)}
DEFAULT = {"jpg": 82, "webp": 80, "avif": 55}
EFFORTS = (2, 3, 4)
AUTO_SAVING_TARGET = 0.15


def run(b: Bench) -> dict:
    """The ``encoding`` case: the light sweep unless ``--long``; smoke runs use tiny references."""
    import pyvips

    from imgproxy.render import configure

    started = time.perf_counter()
    smoke = b.profile.name == "smoke"
    light = not smoke and not b.long
    configure()
    refs = _references(b.work / "encoding", smoke)
    sweep = SMOKE_SWEEP if smoke else LIGHT_SWEEP if light else SWEEP
    ours = {name: _sweep_ours(path, sweep) for name, (path, _) in refs.items()}
    sharp, why = _sweep_sharp(refs, sweep, b.work / "encoding" / "sharp", install=not smoke)
    kinds = {name: kind for name, (_, kind) in refs.items()}
    photos = [n for n, k in kinds.items() if k == "photo"]
    out: dict = {"side": 300 if smoke else 1200, "sweep": "smoke" if smoke else "light" if light else "full",
                 "references": {n: {"kind": k, "size": _size(pyvips, refs[n][0])} for n, k in kinds.items()},
                 "sharp": {"ok": sharp is not None, "why": why}, "ours": ours, "sharp_sweep": sharp or {}}
    out["equal_ssim"] = _equal_ssim(ours, sharp, photos) if sharp else {}
    out["avif_effort"] = _efforts(refs, photos, smoke)
    out["auto"] = _auto(refs, ours, kinds)
    out["targets"] = _targets(out)
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    return out


# --- references -----------------------------------------------------------

def _references(folder: Path, smoke: bool) -> dict[str, tuple[Path, str]]:
    import pyvips

    folder.mkdir(parents=True, exist_ok=True)
    side = 300 if smoke else 1200
    refs: dict[str, tuple[Path, str]] = {}
    for rel in PHOTOS[:2] if smoke else PHOTOS:
        src = TESTIMAGES / rel
        if not src.exists():
            continue
        out = folder / f"{src.stem}.png"
        if not out.exists():
            pyvips.Image.thumbnail(str(src), side, height=side).colourspace("srgb").pngsave(str(out), compression=1)
        refs[src.stem] = (out, "photo")
    for name, make in SYNTHETIC.items():
        out = folder / f"{name}.png"
        if not out.exists():
            make(side if smoke else 1024).pngsave(str(out), compression=1)
        refs[name] = (out, "ai")
    return refs


def _size(pyvips, path: Path) -> str:  # type: ignore[no-untyped-def]
    image = pyvips.Image.new_from_file(str(path))
    return f"{image.width}×{image.height}"


# --- sweeps ---------------------------------------------------------------

def _plan(fmt: str, quality: int = 0, chroma: str = "420", effort: int | None = None):  # type: ignore[no-untyped-def]
    from imgproxy.render.plan import Plan

    return Plan(width=0, height=0, crop=False, enlarge=False, fmt=fmt, quality=quality, strip=True, frames=1,
                flatten=True, chroma=chroma, effort=effort)


def _load(path: Path):  # type: ignore[no-untyped-def]
    import pyvips

    return pyvips.Image.new_from_file(str(path), access="sequential").copy_memory()


def _sweep_ours(path: Path, sweep: dict) -> dict:
    from imgproxy.render.autoquality import luma, luma_of, ssim
    from imgproxy.render.encode import encode_at

    image = _load(path)
    ref = luma(image)
    out: dict = {}
    for fmt, qualities in sweep.items():
        plan = _plan(fmt)
        points = {}
        for q in sorted(set(qualities) | set(POINTS[fmt])):
            start = time.perf_counter()
            body = encode_at(image, plan, q)
            ms = (time.perf_counter() - start) * 1000
            points[str(q)] = {"bytes": len(body), "ms": round(ms, 1), "ssim": round(ssim(ref, luma_of(body)), 5)}
        out[fmt] = points
    return out


def _ensure_sharp(install: bool) -> tuple[bool, str]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False, "node (or npm) is not installed: the sharp comparison was skipped"
    if (SHARP_DIR / "node_modules" / "sharp" / "package.json").exists():
        return True, ""
    if not install:
        return False, "smoke run: sharp is not installed in bench/.sharp and smoke runs do not install it"
    SHARP_DIR.mkdir(parents=True, exist_ok=True)
    (SHARP_DIR / "package.json").write_text('{"private": true}\n')
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", f"sharp@^{SHARP_VERSION}"],
                          cwd=SHARP_DIR, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return False, f"npm install sharp failed: {done.stderr.strip()[-300:]}"
    return True, ""


def _sweep_sharp(refs: dict, sweep: dict, folder: Path, install: bool) -> tuple[dict | None, str]:
    ok, why = _ensure_sharp(install)
    if not ok:
        print(f"bench: encoding: {why}", file=sys.stderr)
        return None, why
    from imgproxy.render.autoquality import luma, luma_of, ssim

    folder.mkdir(parents=True, exist_ok=True)
    version = json.loads((SHARP_DIR / "node_modules" / "sharp" / "package.json").read_text())["version"]
    out: dict = {}
    for name, (path, _) in refs.items():
        done = subprocess.run(["node", str(SHARP_JS), str(SHARP_DIR), str(path),
                               str(folder), json.dumps(sweep)], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return None, f"sharp failed on {name}: {done.stderr.strip()[-300:]}"
        ref = luma(_load(path))
        for line in done.stdout.splitlines():
            r = json.loads(line)
            body = Path(r["file"]).read_bytes()
            out.setdefault(name, {}).setdefault(f"{r['fmt']}:{r['variant']}", {})[str(r["q"])] = {
                "bytes": len(body), "ms": round(r["ms"], 1), "ssim": round(ssim(ref, luma_of(body)), 5)}
    return out, f"sharp {version}"


# --- figures --------------------------------------------------------------

def _equal_ssim(ours: dict, sharp: dict, photos: list[str]) -> dict:
    out: dict = {}
    for fmt, points in POINTS.items():
        for variant in ("default", "mozjpeg") if fmt == "jpg" else ("default",):
            for q in points:
                ratios, times, ssims, missing = [], [], [], 0
                for name in photos:
                    mine = ours[name][fmt][str(q)]
                    theirs = at_ssim(sharp[name][f"{fmt}:{variant}"].values(), mine["ssim"])
                    if theirs is None:
                        missing += 1
                        continue
                    ratios.append(mine["bytes"] / theirs[0])
                    times.append(mine["ms"] / theirs[1])
                    ssims.append(mine["ssim"])
                out[f"{fmt}:{variant}:q{q}"] = {
                    "fmt": fmt, "sharp": variant, "q": q, "bytes_ratio": geomean(ratios),
                    "time_ratio": geomean(times), "ssim": round(statistics.fmean(ssims), 4) if ssims else None,
                    "photos": len(ratios), "outside_sharps_range": missing}
    return out


def _efforts(refs: dict, photos: list[str], smoke: bool) -> dict:
    from imgproxy.render.autoquality import luma, luma_of, ssim
    from imgproxy.render.encode import encode_at

    out: dict = {}
    for effort in EFFORTS:
        sizes, times, ssims = [], [], []
        for name in photos[:2] if smoke else photos:
            image = _load(refs[name][0])
            start = time.perf_counter()
            body = encode_at(image, _plan("avif", effort=effort), DEFAULT["avif"])
            times.append(time.perf_counter() - start)
            sizes.append(len(body))
            ssims.append(ssim(luma(image), luma_of(body)))
        out[str(effort)] = {"kb": round(statistics.fmean(sizes) / 1024, 1), "s": round(statistics.fmean(times), 3),
                            "ssim": round(statistics.fmean(ssims), 4)}
    base = out[str(EFFORTS[0])]
    for row in out.values():
        row["bytes_vs_2"] = round(row["kb"] / base["kb"], 3)
        row["time_vs_2"] = round(row["s"] / base["s"], 2)
    return out


def _auto(refs: dict, ours: dict, kinds: dict) -> dict:
    from imgproxy.render.autoquality import choose, luma, luma_of, ssim
    from imgproxy.render.encode import encode_at

    photos = [n for n, k in kinds.items() if k == "photo"]
    out: dict = {}
    for fmt, q in DEFAULT.items():
        target = min(ours[n][fmt][str(q)]["ssim"] for n in photos)
        rows = {}
        for name, (path, kind) in refs.items():
            image = _load(path)
            plan = _plan(fmt)
            start = time.perf_counter()
            choice = choose(image, fmt, target, lambda im, quality: encode_at(im, plan, quality))
            auto_ms = (time.perf_counter() - start) * 1000
            fixed = ours[name][fmt][str(q)]
            rows[name] = {"kind": kind, "fixed_bytes": fixed["bytes"], "fixed_ms": fixed["ms"],
                          "fixed_ssim": fixed["ssim"], "auto_bytes": len(choice.body), "auto_q": choice.quality,
                          "auto_ms": round(auto_ms, 1), "auto_ssim": round(ssim(luma(image), luma_of(choice.body)), 5),
                          "encodes": choice.encodes, "probes": choice.probes}
        summary = {}
        for kind in ("photo", "ai"):
            part = [r for r in rows.values() if r["kind"] == kind]
            if part:
                summary[kind] = {
                    "saving": round(statistics.fmean(1 - r["auto_bytes"] / r["fixed_bytes"] for r in part), 3),
                    "time_ratio": geomean([r["auto_ms"] / r["fixed_ms"] for r in part]),
                    "met": sum(r["auto_ssim"] >= target for r in part), "count": len(part)}
        out[fmt] = {"fixed_q": q, "target": target, "images": rows, "summary": summary}
    return out


def _targets(out: dict) -> list[dict]:
    rows = []
    for fmt in POINTS:
        key = f"{fmt}:default:q{POINTS[fmt][1]}"
        cell = out["equal_ssim"].get(key)
        value = cell["bytes_ratio"] if cell else None
        rows.append(_row(f"encoding {fmt} (q{POINTS[fmt][1]}): bytes at equal SSIM, ours ÷ sharp", value, 1.0,
                         "max", None if cell else out["sharp"]["why"]))
    for fmt, auto in out["auto"].items():
        photo = auto["summary"].get("photo")
        rows.append(_row(f"encoding {fmt}: auto saves vs fixed q{auto['fixed_q']} at SSIM ≥ {auto['target']:.4f}",
                         photo["saving"] if photo else None, AUTO_SAVING_TARGET, "min", None))
    return rows


def _row(case: str, value: float | None, target: float, direction: str, why: str | None) -> dict:
    if value is None:
        return {"case": case, "ratio": None, "target": target, "direction": direction, "pass": None,
                "why": why or "not measured"}
    ok = value <= target if direction == "max" else value >= target
    return {"case": case, "ratio": value, "target": target, "direction": direction, "pass": ok}
