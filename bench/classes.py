"""Workload classes: the originals our users send, each to the preset they use.

One miss row per class and output format, bare pyvips (:mod:`bench.bare_direct`),
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
compared with WebP's in :mod:`bench.avif`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import servers
from .context import THUMBOR_FORMAT, Bench, _json_run
from .inputs import TESTIMAGES
from .quiet import NOISY, CpuWatch

CONFIG_PRESETS = servers.MAIN / "config" / "presets.toml"
HEIC = TESTIMAGES / "heic" / "mei__exif-at-eof.heic"  # iPhone 11 Pro, 3024x4032, Display P3
GIF = TESTIMAGES / "animated" / "thumbor__Rotating_earth_large.gif"  # 400x400, 44 frames
FORMATS = ("webp", "avif", "jpg")


@dataclass(frozen=True)
class WorkClass:
    name: str
    what: str  # for the report
    preset: str  # in config/presets.toml
    sources: tuple[Path, ...]
    thumbor_reads: bool = True


#: Smoke runs: small files down the same decoder paths (HEVC HEIC, animated GIF).
SMOKE_HEIC = TESTIMAGES / "heic" / "libheif__rainbow-451x461.heic"
SMOKE_GIF = TESTIMAGES / "animated" / "libvips__cogs.gif"


def classes(b: Bench) -> list[WorkClass]:
    smoke = b.profile.name == "smoke"
    ai = _ai_pngs(b.inputs.root / "class-src", smoke)
    heic, gif = (SMOKE_HEIC, SMOKE_GIF) if smoke else (HEIC, GIF)
    return [
        # inputs.large is a hard link of large/mei__Issue_266.jpg (a small copy in smoke runs).
        WorkClass("camera22", "22 MP camera JPEG → 1200 px", "web", (b.inputs.large,)),
        WorkClass("heic12", "12 MP iPhone HEIC → 1200 px", "web", (heic,), thumbor_reads=False),
        WorkClass("ai-dalle", "1–2 MP AI-tool PNG → dalle (1024 px)", "dalle", ai),
        WorkClass("ai-sd", "1–2 MP AI-tool PNG → sd (768 px)", "sd", ai),
        WorkClass("thumb2mp", "2 MP JPEG → 300 px thumbnail", "thumbnail", tuple(b.inputs.photos)),
        WorkClass("gif", "animated GIF (400×400, 44 frames) → 300 px", "thumbnail", (gif,)),
    ]


def _ai_pngs(folder: Path, smoke: bool) -> tuple[Path, ...]:
    """DALL-E / Stable Diffusion sized PNGs (1792×1024, 1024×1024, 1536×1024): flat
    illustration, diffusion-soft fields and a poster (bench/encoding.py draws them)."""
    from .encoding import _SYNTHETIC

    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"ai-flat": (1792, 1024), "ai-soft": (1024, 1024), "ai-poster": (1536, 1024)}
    out = []
    for name, (width, height) in sizes.items():
        w, h = (width // 8, height // 8) if smoke else (width, height)
        path = folder / f"{name}.png"
        if not path.exists():
            n = max(w, h)  # drawn square, then squeezed to the tool's aspect
            _SYNTHETIC[name](n).resize(w / n, vscale=h / n).cast("uchar").pngsave(str(path), compression=6)
        out.append(path)
    return tuple(out)


def cold_files(b: Bench, tag: str, sources: tuple[Path, ...], count: int) -> list[str]:
    """``count`` fresh hard links under ``root/<tag>/`` cycling over ``sources``; their paths."""
    folder = b.inputs.root / tag
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        source = sources[i % len(sources)]
        name = folder / f"{i:05d}{source.suffix.lower()}"
        if not name.exists():
            try:
                os.link(source, name)
            except OSError:  # another file system: copy once
                name.write_bytes(source.read_bytes())
        out.append(str(name))
    return out


def spec_for(cls: WorkClass, fmt: str, source: Path) -> dict:
    """What one render of ``cls`` does, for bare pyvips: from our preset and formats.py."""
    from imgproxy.formats import OUTPUTS, PLUGINS
    from imgproxy.presets import load_presets
    from imgproxy.render import Limits
    from imgproxy.render.jobs import Source
    from imgproxy.render.plan import make_plan
    from imgproxy.render.source import probe

    preset = load_presets(str(CONFIG_PRESETS))[cls.preset]
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
    best: dict = {}
    for attempt in range(b.profile.attempts):
        b.quiet()
        level = {"bare": _bare(b, cls, fmt, c, duration, attempt),
                 "ours": _served(b, cls, fmt, c, duration, attempt, ours, "ours")}
        if thumbor is not None:
            level["thumbor"] = _served(b, cls, fmt, c, duration, attempt, thumbor, "thumbor")
        noise = max(r["foreign_cpu"] for r in level.values())
        if not best or noise < max(r["foreign_cpu"] for r in best.values()):
            best = level
        if noise < NOISY:
            break
    for target, r in best.items():
        print(f"[class] {cls.name:8} {fmt:4} c={c} {target:7} {r['rps']:7.2f} req/s  p50 {r['p50_ms']:7.1f} ms"
              f"  cpu {r.get('cpu_ms_per_req')} ms/req  foreign {r['foreign_cpu']:.0%}  errors {r['errors']}"
              f"  {r.get('sample', '')}", file=sys.stderr, flush=True)
    return best


def _profile(cls: WorkClass, formats: list[str], smoke: bool) -> dict:
    """Where one render's time goes, one thread: pyvips' decode + resize, then encode (in this
    process), and thumbor's Pillow steps (bench/pillow_profile.py, under thumbor's Python)."""
    from .bare_direct import profile

    out = {}
    python = servers.THUMBOR_VENV / "bin" / "python"
    for fmt in formats:
        spec = spec_for(cls, fmt, cls.sources[0])
        out[fmt] = profile(str(cls.sources[0]), spec, 1 if smoke else 2)
        if cls.thumbor_reads and python.exists():
            cmd = [str(python), str(Path(__file__).with_name("pillow_profile.py")), str(cls.sources[0]),
                   str(spec["width"]), str(spec["height"]), fmt, str(spec["options"]["Q"])]
            try:
                out[fmt]["thumbor"] = _json_run(cmd, 300)
            except (RuntimeError, ValueError) as exc:
                out[fmt]["thumbor"] = {"error": str(exc)[-200:]}
    return out


def _count(b: Bench, duration: float) -> int:
    return 4 if b.profile.name == "smoke" else max(40, int(duration * 60))


def _bare(b: Bench, cls: WorkClass, fmt: str, c: int, duration: float, attempt: int) -> dict:
    files = cold_files(b, f"cls/{cls.name}-{fmt}-bare-a{attempt}", cls.sources, _count(b, duration))
    spec = spec_for(cls, fmt, cls.sources[0])
    cmd = [sys.executable, "-m", "bench.bare_direct", "--spec", str(b.url_list([json.dumps(spec)])),
           "--files", str(b.url_list([json.dumps(files)])), "--processes", str(b.workers),
           "--concurrency", str(c), "--duration", str(duration)]
    with CpuWatch() as cpu:
        r = _json_run(cmd, duration + 600)
    cpu_s = r.pop("cpu_s")
    r["cpu_ms_per_req"] = round(1000 * cpu_s / r["requests"], 1) if r["requests"] else None
    r["foreign_cpu"] = cpu.foreign
    r["spec"] = spec
    from imgproxy.render import configure

    from .bare_direct import render

    configure()  # one libvips thread, as in the bare processes: AVIF's bytes depend on it
    r["sample"] = _describe(render(str(cls.sources[0]), spec))
    return r


def _served(b: Bench, cls: WorkClass, fmt: str, c: int, duration: float, attempt: int,
            server: servers.Server, target: str) -> dict:
    preset = _preset(cls.preset)
    tag = f"cls/{cls.name}-{fmt}-{target}-a{attempt}"
    files = cold_files(b, tag, cls.sources, _count(b, duration) + 2)
    ids = [str(Path(f).relative_to(b.inputs.root)) for f in files]
    if target == "ours":
        paths = [b.ours_path(i.rsplit(".", 1)[0], fmt, cls.preset) for i in ids]
    else:
        quality = preset.quality[fmt]
        paths = [f"/unsafe/fit-in/{preset.width}x{preset.height}/filters:format({THUMBOR_FORMAT[fmt]})"
                 f":quality({quality})/{i}" for i in ids]
    b.client(server.ports, paths[:2], 2, 120)  # warm-up: the encoder's first use, off the clock
    with CpuWatch(server.pids) as cpu:
        r = b.client(server.ports, paths[2:], c, duration)
    r["cpu_ms_per_req"] = round(1000 * cpu.target_s / r["requests"], 1) if r["requests"] else None
    r["foreign_cpu"] = cpu.foreign
    r["sample"] = _fetch_sample(server, paths[0])
    if target == "ours" and set(r.get("tiers", {})) - {"render"}:
        b.notes.append(f"class {cls.name} {fmt}: ours answered some requests from {r['tiers']}")
    return r


def _preset(name: str):  # type: ignore[no-untyped-def]
    from imgproxy.presets import load_presets

    return load_presets(str(CONFIG_PRESETS))[name]


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
