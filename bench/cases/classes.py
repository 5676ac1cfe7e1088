"""Workload classes: the originals our users send, each to the preset they use.

One miss row per class and output format, bare pyvips (:mod:`bench.harness.bare_direct`),
ours and thumbor back to back at the same processes and concurrency, every
request a fresh original name (a hard link), so ours never answers from its
store. thumbor gets ``fit-in/WxH`` with the preset's format and quality.

    camera22  22 MP camera JPEG (large/)            -> web (1200 px)
    heic12    12 MP iPhone HEIC (pi-heif, libvips)  -> web (1200 px)
    ai-dalle  1-2 MP AI-tool PNGs (generated)       -> dalle (1024 px)
    ai-sd     the same PNGs                         -> sd (768 px)
    thumb2mp  2 MP JPEGs                            -> thumbnail (300 px)
    gif       animated GIF, 44 frames               -> thumbnail (300 px); WebP keeps
                                                       every frame, AVIF and JPEG the first

Each sample response is decoded once to record its size and frame count, so a
contender that drops frames (thumbor's Pillow engine on an animated GIF) is
visible in the table rather than counted as the same work. The AVIF rows are
compared with WebP's in :mod:`bench.cases.avif`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from pathlib import Path

from bench.harness import bare_direct, servers
from bench.harness.context import THUMBOR_FORMAT, Bench, json_run
from bench.harness.inputs import cold_files
from bench.harness.paths import CONFIG_PRESETS, MAIN, THUMBOR_VENV
from bench.harness.quiet import CpuWatch, least_disturbed
from bench.harness.stats import ms_per_request
from bench.harness.workload import WorkClass, classes

PILLOW_PROFILE = MAIN / "bench" / "harness" / "pillow_profile.py"
FORMATS = ("webp", "avif", "jpg")


def spec_for(cls: WorkClass, fmt: str, source: Path) -> dict:
    """What one render of ``cls`` does, for bare pyvips: from our preset and formats.py."""
    from imgproxy.formats import OUTPUTS, PLUGINS
    from imgproxy.render import Limits
    from imgproxy.render.jobs import Source
    from imgproxy.render.plan import make_plan
    from imgproxy.render.source import probe

    preset = cls.load_preset()
    header, _ = probe(Source(path=str(source)), Limits())
    plan = make_plan(header, preset, fmt, Limits())
    output = OUTPUTS[fmt]
    options = dict(output.options)
    options["Q"] = plan.quality
    return {"width": plan.width, "height": plan.height, "frames": plan.frames > 1, "profile": header.icc,
            "decoder": "pi-heif" if header.loader in PLUGINS else "libvips", "flatten": plan.flatten,
            "saver": output.saver, "options": options}


def run(b: Bench) -> dict:
    """``{class: {"what", "preset", fmt: {target: summary}}}`` at concurrency = processes."""
    p = b.profile
    c = b.workers
    duration = 1.0 if p.name == "smoke" else CLASS_DURATION
    out: dict = {"concurrency": c, "duration_s": duration}
    work = classes(b)
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(servers.ours(
            b.inputs.root, b.work / "variants-classes", CONFIG_PRESETS, b.logs / "ours-classes.log",
            b.workers, render_mode=b.render_mode))
        thumbor = stack.enter_context(servers.thumbor(
            b.inputs.root, b.work / "thumbor-classes", b.logs / "thumbor-classes.log", b.workers,
            result_storage=False)) if b.thumbor else None
        for cls in work:
            row: dict = {"what": cls.what, "preset": cls.preset, "sources": [s.name for s in cls.sources],
                         "thumbor_reads": cls.thumbor_reads}
            for fmt in FORMATS if p.name != "smoke" else ("webp", "jpg"):
                row[fmt] = _level(b, cls, fmt, c, duration, ours, thumbor)
            row["profile"] = _profile(cls, [f for f in FORMATS if f in row], b.profile.name == "smoke")
            out[cls.name] = row
    return out


#: Seconds per run; a 22 MP AVIF takes ~0.5 s, so every run sees at least a dozen renders.
CLASS_DURATION = 6.0


def _level(b: Bench, cls: WorkClass, fmt: str, c: int, duration: float, ours: servers.Server,
           thumbor: servers.Server | None) -> dict:
    def level(attempt: int) -> dict:
        b.quiet()
        out = {"bare": _bare(b, cls, fmt, c, duration, attempt),
               "ours": _served(b, cls, fmt, c, duration, attempt, ours, "ours")}
        if thumbor is not None:
            out["thumbor"] = _served(b, cls, fmt, c, duration, attempt, thumbor, "thumbor")
        return out

    best = least_disturbed(b.profile.attempts, level, lambda runs: max(r["foreign_cpu"] for r in runs.values()))
    for target, r in best.items():
        print(f"[class] {cls.name:8} {fmt:4} c={c} {target:7} {r['rps']:7.2f} req/s  p50 {r['p50_ms']:7.1f} ms"
              f"  cpu {r.get('cpu_ms_per_req')} ms/req  foreign {r['foreign_cpu']:.0%}  errors {r['errors']}"
              f"  {r.get('sample', '')}", file=sys.stderr, flush=True)
    return best


def _profile(cls: WorkClass, formats: list[str], smoke: bool) -> dict:
    """Where one render's time goes, one thread: pyvips' decode + resize, then encode (in this
    process), and thumbor's Pillow steps (bench/harness/pillow_profile.py, under thumbor's Python)."""
    out = {}
    python = THUMBOR_VENV / "bin" / "python"
    for fmt in formats:
        spec = spec_for(cls, fmt, cls.sources[0])
        out[fmt] = bare_direct.profile(str(cls.sources[0]), spec, 1 if smoke else 2)
        if cls.thumbor_reads and python.exists():
            cmd = [str(python), str(PILLOW_PROFILE), str(cls.sources[0]),
                   str(spec["width"]), str(spec["height"]), fmt, str(spec["options"]["Q"])]
            try:
                out[fmt]["thumbor"] = json_run(cmd, 300)
            except (RuntimeError, ValueError) as exc:
                out[fmt]["thumbor"] = {"error": str(exc)[-200:]}
    return out


def _count(b: Bench, duration: float) -> int:
    return 4 if b.profile.name == "smoke" else max(40, int(duration * 60))


def _bare(b: Bench, cls: WorkClass, fmt: str, c: int, duration: float, attempt: int) -> dict:
    files = [str(f) for f in cold_files(b.inputs.root / f"cls/{cls.name}-{fmt}-bare-a{attempt}", cls.sources,
                                        _count(b, duration))]
    spec = spec_for(cls, fmt, cls.sources[0])
    cmd = [sys.executable, "-m", "bench.harness.bare_direct", "--spec", str(b.url_list([json.dumps(spec)])),
           "--files", str(b.url_list([json.dumps(files)])), "--processes", str(b.workers),
           "--concurrency", str(c), "--duration", str(duration)]
    with CpuWatch() as cpu:
        r = json_run(cmd, duration + 600)
    r["cpu_ms_per_req"] = ms_per_request(r.pop("cpu_s"), r)
    r["foreign_cpu"] = cpu.foreign
    r["spec"] = spec
    from imgproxy.render import configure

    configure()  # one libvips thread, as in the bare processes: AVIF's bytes depend on it
    r["sample"] = _describe(bare_direct.render(str(cls.sources[0]), spec))
    return r


def _served(b: Bench, cls: WorkClass, fmt: str, c: int, duration: float, attempt: int,
            server: servers.Server, target: str) -> dict:
    preset = cls.load_preset()
    tag = f"cls/{cls.name}-{fmt}-{target}-a{attempt}"
    files = cold_files(b.inputs.root / tag, cls.sources, _count(b, duration) + 2)
    ids = [str(f.relative_to(b.inputs.root)) for f in files]
    if target == "ours":
        paths = [b.ours_path(i.rsplit(".", 1)[0], fmt, cls.preset) for i in ids]
    else:
        quality = preset.quality[fmt]
        paths = [f"/unsafe/fit-in/{preset.width}x{preset.height}/filters:format({THUMBOR_FORMAT[fmt]})"
                 f":quality({quality})/{i}" for i in ids]
    b.client(server.ports, paths[:2], 2, 120)  # warm-up: the encoder's first use, off the clock
    with CpuWatch(server.pids) as cpu:
        r = b.client(server.ports, paths[2:], c, duration)
    r["cpu_ms_per_req"] = ms_per_request(cpu.target_s, r)
    r["foreign_cpu"] = cpu.foreign
    r["sample"] = _fetch_sample(server, paths[0])
    if target == "ours" and set(r.get("tiers", {})) - {"render"}:
        b.notes.append(f"class {cls.name} {fmt}: ours answered some requests from {r['tiers']}")
    return r


def _fetch_sample(server: servers.Server, path: str) -> dict:
    """Size and frames of one response (it is a hit or a re-render by now: cheap, off the clock)."""
    try:
        with urllib.request.urlopen(server.base + path, timeout=120) as response:
            return _describe(response.read())
    except OSError as exc:
        return {"error": str(exc)[:200]}


def _describe(body: bytes) -> dict:
    import pyvips

    try:
        image = pyvips.Image.new_from_buffer(body, "", n=-1)
    except pyvips.Error:
        image = pyvips.Image.new_from_buffer(body, "")
    frames = image.get("n-pages") if image.get_typeof("n-pages") else 1
    height = image.get("page-height") if frames > 1 and image.get_typeof("page-height") else image.height
    loader = str(image.get("vips-loader")) if image.get_typeof("vips-loader") else "?"
    fmt = {"jpegload": "jpg", "webpload": "webp", "heifload": "avif", "gifload": "gif", "pngload": "png"}.get(
        loader.replace("_buffer", ""), loader)
    return {"width": image.width, "height": height, "frames": frames, "bytes": len(body), "format": fmt}
