"""The encoding section of BENCHMARKS.md, from ``results["encoding"]`` (bench/cases/encoding.py)."""

from __future__ import annotations


def encoding_section(e: dict) -> list[str]:
    if not e:
        return []
    refs = e["references"]
    photos = sum(r["kind"] == "photo" for r in refs.values())
    out = ["", "## Encoding: bytes at equal SSIM against sharp, AVIF effort, `quality = \"auto\"`", "",
           f"`python -m bench --cases encoding`{_took(e)}: {photos} corpus photos resized to "
           f"fit {e.get('side', 1200)} px ({', '.join(r['size'] for r in refs.values() if r['kind'] == 'photo')}) and "
           f"{len(refs) - photos} generated AI-tool-like PNGs (flat, soft, poster), one PNG each fed to "
           "both encoders, one libvips thread each. Metric: luma SSIM (Gaussian σ 1.5, as scikit-image computes it) "
           "of the decoded output against that PNG. See `bench/cases/encoding.py` for the method."
           + (" This is `make bench`'s light sweep (four qualities a format besides the operating points); "
              "`python -m bench --long` runs the full one."
              if e.get("sweep") == "light" else ""), ""]
    if not e["sharp"]["ok"]:
        out += [f"**sharp could not be measured:** {e['sharp']['why']}", ""]
    else:
        out += [f"### Ours ÷ {e['sharp']['why']} at equal SSIM (photos, geometric mean)", "",
                "At the SSIM our encoder reaches at quality q, sharp's bytes and encode time are "
                "interpolated on its own quality sweep. Below 1 is better for us.", "",
                "| format | q (ours) | vs sharp's | mean SSIM | bytes ours ÷ sharp | encode time ours ÷ sharp "
                "| photos |",
                "|---|---:|---|---:|---:|---:|---:|"]
        for cell in e["equal_ssim"].values():
            label = "default" if cell["sharp"] == "default" else "mozjpeg"
            out.append(f"| {cell['fmt']} | {cell['q']} | {label} | {_f(cell['ssim'], 4)} | "
                       f"{_f(cell['bytes_ratio'], 3)} | {_f(cell['time_ratio'], 2)} | {cell['photos']}"
                       + (f" ({cell['outside_sharps_range']} outside sharp's sweep)"
                          if cell["outside_sharps_range"] else "") + " |")
        out.append("")
    out += ["### AVIF effort (ours, default quality, photos)", "",
            "| effort | mean KB | mean s | mean SSIM | bytes ÷ effort 2 | time ÷ effort 2 |",
            "|---:|---:|---:|---:|---:|---:|"]
    for effort, row in e["avif_effort"].items():
        out.append(f"| {effort} | {row['kb']} | {row['s']} | {row['ssim']} | {row['bytes_vs_2']} | "
                   f"{row['time_vs_2']} |")
    out += ["", "### `quality = \"auto\"` against the default fixed quality", "",
            "Target: the lowest SSIM the fixed quality reaches over the photos, so both guarantee it on every "
            "photo. *Saving* is the mean of 1 − auto ÷ fixed bytes per image; *time* is auto's whole search "
            "÷ one fixed encode (geometric mean); *met* counts outputs at or above the target.", "",
            "| format | fixed q | target SSIM | photos: saving | photos: time | photos: met | "
            "AI PNGs: saving | AI PNGs: time | AI PNGs: met |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, auto in e["auto"].items():
        cells = []
        for kind in ("photo", "ai"):
            s = auto["summary"].get(kind)
            cells += [f"{s['saving']:.1%}", f"{s['time_ratio']}×", f"{s['met']}/{s['count']}"] if s else ["—"] * 3
        out.append(f"| {fmt} | {auto['fixed_q']} | {auto['target']:.4f} | " + " | ".join(cells) + " |")
    out += ["", "Per image (auto's quality, bytes auto ÷ fixed):", ""]
    for fmt, auto in e["auto"].items():
        out.append(f"- {fmt}: " + ", ".join(
            f"{name} q{r['auto_q']} {r['auto_bytes'] / r['fixed_bytes']:.2f}" for name, r in auto["images"].items()))
    return out


def _f(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _took(e: dict) -> str:
    return f" ({e['elapsed_s']:.0f} s)" if e.get("elapsed_s") else ""
