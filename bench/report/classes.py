"""The workload-class, memory-per-process and AVIF sections of BENCHMARKS.md
(``results["classes"]``, ``results["memory"]``, ``results["avif"]``)."""

from __future__ import annotations

from bench.harness.stats import geomean

from .ratios import time_ratios

NAMES = {"bare": "bare pyvips", "ours": "ours", "thumbor": "thumbor"}


def classes_section(results: dict, plots: list[str]) -> list[str]:
    classes = results.get("classes") or {}
    rows = {k: v for k, v in classes.items() if isinstance(v, dict) and "what" in v}
    if not rows:
        return []
    w = results.get("workers", 2)
    out = ["", "## Workload classes: misses as our users send them", "",
           f"Each class runs bare pyvips, ours and thumbor back to back with {w} processes each at concurrency "
           f"{classes['concurrency']} for {classes['duration_s']:g} s per run, every request a fresh original "
           "name (`bench/cases/classes.py`). *Bare pyvips* (`bench/harness/bare_direct.py`) does the same work written "
           f"directly against pyvips in {w} plain processes: `thumbnail` (shrink-on-load), sRGB when the "
           "profile is not sRGB, flatten when the format has no alpha, the preset's quality and our saver "
           "options, `keep=\"none\"`; HEIC is decoded by pi-heif and then resized by libvips, as ours does. "
           "thumbor gets `/unsafe/fit-in/WxH/filters:format(F):quality(Q)/ID.ext` with the preset's numbers. "
           "*Out* is one response decoded: its size, frames and bytes.", ""]
    for name, row in rows.items():
        out += [f"### {name}: {row['what']}", "",
                f"Preset `{row['preset']}` (config/presets.toml); originals: "
                + ", ".join(f"`{s}`" for s in row["sources"]) + ".", ""]
        if f"bench-class-{name}.png" in plots:
            out += [f"![{name} misses](bench-class-{name}.png)", ""]
        out += ["| format | contender | req/s | p50 / p99 ms | CPU ms/req | out | ours ÷ this | foreign |",
                "|---|---|---:|---:|---:|---|---:|---:|"]
        for fmt in ("webp", "avif", "jpg"):
            level = row.get(fmt) or {}
            ours = level.get("ours")
            for target, r in level.items():
                sample = r.get("sample") or {}
                shape = (f"{sample.get('format', '')} {sample['width']}×{sample['height']}, {sample['frames']} frame"
                         f"{'s' if sample['frames'] > 1 else ''}, {sample['bytes'] / 1024:.1f} KiB"
                         if "width" in sample else sample.get("error", "—"))
                if not r["requests"]:
                    out.append(f"| {fmt} | {NAMES[target]} | — | — | — | {shape} | — | {r['foreign_cpu']:.0%} |")
                    continue
                ratio = f"{ours['rps'] / r['rps']:.2f}" if ours and target != "ours" and r["rps"] else ""
                out.append(f"| {fmt} | {NAMES[target]} | {r['rps']:.2f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
                           f"{r.get('cpu_ms_per_req') or '—'} | {shape} | {ratio} | {r['foreign_cpu']:.0%} |")
        out += _where(row)
        if not row.get("thumbor_reads", True):
            out += ["", "thumbor cannot read this class: its Pillow engine has no HEIF decoder unless the "
                    "optional `pillow-heif` is installed (thumbor 7.8 `pip install thumbor` does not bring it); "
                    "every request got the status shown as an error above."]
        odd = sorted({f"{fmt} (got {r['sample']['format']})" for fmt in ("webp", "avif", "jpg")
                      for r in [(row.get(fmt) or {}).get("thumbor") or {}]
                      if (r.get("sample") or {}).get("format") not in (None, fmt)})
        if odd:
            out += ["", "thumbor did not answer in the format asked for: " + ", ".join(odd) + ". For an animated "
                    "GIF it keeps the animation and answers a GIF (its gifsicle path) whatever `format()` says, "
                    "so its rows here are not the same work as ours and are shown for context only."]
        gif = (row.get("webp") or {}).get("thumbor", {}).get("sample", {})
        ours_gif = (row.get("webp") or {}).get("ours", {}).get("sample", {})
        if gif.get("frames") and ours_gif.get("frames", 1) > gif["frames"]:
            out += ["", f"thumbor's WebP of this animation has {gif['frames']} frame(s) against our "
                    f"{ours_gif['frames']}: its Pillow engine keeps only the first frame unless gifsicle "
                    "is configured, and gifsicle writes GIF only, so the WebP rows are not the same work."]
        out.append("")
    return out


def _where(row: dict) -> list[str]:
    """Per request: bare's decode + resize and encode (one thread), ours' Server-Timing means."""
    prof = row.get("profile") or {}
    if not prof:
        return []
    out = ["", "Where a miss's time goes, per request. *pyvips decode + resize* and *encode* are one render "
           "split in two, CPU ms on one thread (`bench/harness/bare_direct.py profile`); *thumbor decode / "
           "resize / encode* are its Pillow engine's steps the same way (`bench/harness/pillow_profile.py`: "
           "`draft`, LANCZOS, its save options); *fetch*, *queue*, *render* and *store* are ours' "
           "`Server-Timing` means over the run (wall ms); *HTTP + other* is ours' p50 minus their sum (0 when "
           "the p50 is below it). The "
           "one-thread profiles are taken on the same shared machine: compare pyvips with thumbor in one row, "
           "not across rows.", "",
           "| format | pyvips decode + resize | pyvips encode | thumbor decode / resize / encode | "
           "ours fetch | queue | render | store | HTTP + other (p50) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, p in prof.items():
        ours = (row.get(fmt) or {}).get("ours") or {}
        t = ours.get("server_timing_ms") or {}
        rest = "—"
        if t and ours.get("p50_ms"):  # the p50 and the means are different statistics: below 0 is noise
            rest = f"{max(0.0, ours['p50_ms'] - sum(t.values())):.1f}"
        th = p.get("thumbor") or {}
        pil = (f"{th['decode_ms']} / {th['resize_ms']} / {th['encode_ms']}" if "decode_ms" in th
               else th.get("error", "—")[:60])
        out.append(f"| {fmt} | {p['decode_resize_ms']} | {p['encode_ms']} | {pil} | " + " | ".join(
            str(t.get(k, "—")) for k in ("fetch", "queue", "render", "store")) + f" | {rest} |")
    return out


def memory_processes(m: dict) -> list[str]:
    """Per-process peaks of the memory case (bench/cases/extras.py memory)."""
    if not m.get("render") and not m.get("server"):
        return []
    out = ["", "Peak RSS of each process over the run (render workers are the tree's `imgproxy.workers.*` "
           "processes; every other process is a server process):", "",
           "| processes | count | highest peak MiB | bound MiB | every peak MiB |", "|---|---:|---:|---:|---|"]
    for kind, label in (("render", "render workers"), ("server", "server processes")):
        r = m.get(kind) or {}
        out.append(f"| {label} | {r.get('processes', 0)} | {r.get('max_peak_mb', '—')} | < {r.get('limit_mb')} | "
                   + ", ".join(str(v) for v in r.get("peaks_mb", [])) + " |")
    return out


def avif_section(results: dict) -> list[str]:
    a = results.get("avif") or {}
    times = time_ratios(results.get("classes") or {})
    if not a and not times:
        return []
    out = ["", "## AVIF against WebP, per class", ""]
    if times:
        out += ["Time, from ours' misses above: AVIF ÷ WebP by requests/s and by CPU per request.", "",
                "| class | AVIF ÷ WebP time (req/s) | (CPU per request) | note |", "|---|---:|---:|---|"]
        for name, t in times.items():
            note = f"WebP keeps all {t['webp_frames']} frames, AVIF one" if (t.get("webp_frames") or 1) > 1 else ""
            out.append(f"| {name} | {t['by_rps']} | {t['by_cpu'] or '—'} | {note} |")
        out.append("")
    if not a:
        return out
    effort = str(a["default_effort"])
    out += [f"Bytes at visually similar quality: {a['metric']}. The reference is the pipeline's resized "
            "image just before encoding (first source of each class, first frame of an animation). WebP is "
            "swept over quality and its bytes interpolated at the SSIM AVIF reached; below 1, AVIF is smaller "
            "at equal SSIM. Encode times are one thread, the faster of two.", "",
            "| class | size | AVIF q | effort | AVIF KiB | SSIM | ms | WebP KiB at that SSIM | WebP ms | "
            "AVIF ÷ WebP bytes | AVIF ÷ WebP ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in a["classes"].items():
        for e, r in row["avif"].items():
            mark = " (default)" if e == effort else ""
            webp_kib = f"{r['webp_bytes_at_ssim'] / 1024:.1f}" if r.get("webp_bytes_at_ssim") else "—"
            out.append(f"| {name} | {row['size']} | {row['avif_q']} | {e}{mark} | {r['bytes'] / 1024:.1f} | "
                       f"{r['ssim']:.4f} | {r['ms']:.0f} | {webp_kib} | {r.get('webp_ms_at_ssim') or '—'} | "
                       f"{r.get('bytes_vs_webp') or r.get('why', '—')} | {r.get('ms_vs_webp') or '—'} |")
    out += ["", "Across classes (geometric means) by effort:", "",
            "| effort | AVIF ÷ WebP bytes at equal SSIM | AVIF encode ms ÷ WebP's | bytes ÷ effort "
            f"{effort}'s | time ÷ effort {effort}'s |", "|---:|---:|---:|---:|---:|"]
    summary = effort_summary(a)
    for e, s in summary.items():
        out.append(f"| {e}{' (default)' if e == effort else ''} | {s['bytes_vs_webp']} | {s['ms_vs_webp']} | "
                   f"{s['bytes_vs_default']} | {s['time_vs_default']} |")
    out += ["", _justify(summary, effort)]
    return out


def effort_summary(a: dict) -> dict:
    effort = str(a["default_effort"])
    out = {}
    for e in map(str, a["efforts"]):
        cells = [row["avif"][e] for row in a["classes"].values() if e in row["avif"]]
        base = [row["avif"][effort] for row in a["classes"].values() if e in row["avif"] and effort in row["avif"]]
        out[e] = {"bytes_vs_webp": geomean([c["bytes_vs_webp"] for c in cells if c.get("bytes_vs_webp")]),
                  "ms_vs_webp": geomean([c["ms_vs_webp"] for c in cells if c.get("ms_vs_webp")]),
                  "bytes_vs_default": geomean([c["bytes"] / b["bytes"] for c, b in zip(cells, base)]),
                  "time_vs_default": geomean([c["ms"] / b["ms"] for c, b in zip(cells, base)])}
    return out


def _justify(summary: dict, effort: str) -> str:
    """The default effort's case, in numbers from this run."""
    here = summary.get(effort) or {}
    higher = [e for e in summary if int(e) > int(effort)]
    lower = [e for e in summary if int(e) < int(effort)]
    parts = [f"**Default effort {effort}:** AVIF is {here.get('bytes_vs_webp')}× WebP's bytes at equal SSIM "
             f"and costs {here.get('ms_vs_webp')}× its encode time."]
    for e in higher:
        s = summary[e]
        saved = 1 - (s["bytes_vs_default"] or 1)
        parts.append(f"Effort {e} saves {saved:.1%} more bytes for {s['time_vs_default']}× the encode time, which "
                     "a miss waits for; it is what eager renders use (`IMGPROXY_AVIF_EAGER_EFFORT`).")
    for e in lower:
        s = summary[e]
        parts.append(f"Effort {e} is {s['time_vs_default']}× the time for {(s['bytes_vs_default'] or 1) - 1:+.1%} "
                     "bytes.")
    return " ".join(parts)
