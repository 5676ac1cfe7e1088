"""Draw the plots from a results JSON: ``python bench/report/plot.py results.json OUTDIR``.

Standalone (stdlib + matplotlib), because it runs under the thumbor venv's
Python: matplotlib stays out of the main package's dependencies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"bare": "#999999", "ours": "#1f77b4", "thumbor": "#d62728", "ours-memory": "#1f77b4",
           "ours-store": "#6baed6", "nginx": "#2ca02c", "thumbor-hits": "#d62728"}


def miss(results: dict, out: Path) -> None:
    formats = list(results["miss"])
    fig, axes = plt.subplots(1, len(formats), figsize=(4.2 * len(formats), 3.6), squeeze=False)
    for ax, fmt in zip(axes[0], formats):
        for target, runs in results["miss"][fmt].items():
            levels = sorted(runs, key=int)
            ax.plot([int(c) for c in levels], [runs[c]["rps"] for c in levels], marker="o",
                    label="bare pyvips" if target == "bare" else target, color=COLOURS.get(target))
        ax.set_title(f"miss, {fmt}: 2 MP → fit 512")
        ax.set_xlabel("concurrent requests")
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(c) for c in levels], [str(c) for c in levels])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("requests / s")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out / "bench-miss.png", dpi=110)
    plt.close(fig)


def hit(results: dict, out: Path) -> None:
    hits = {t: runs for t, runs in (results.get("hit") or {}).items() if t != "paced"}  # paced: one rate
    if not hits:
        return
    levels = sorted({c for runs in hits.values() for c in runs}, key=int)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(hits)
    for i, (target, runs) in enumerate(hits.items()):
        xs = [j + i * width for j in range(len(levels))]
        ax.bar(xs, [runs.get(c, {}).get("rps", 0) for c in levels], width, label=target,
               color=COLOURS.get(target))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(levels))], [f"c={c}" for c in levels])
    ax.set_ylabel("requests / s")
    ax.set_title("hit: warm 512 px WebP")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bench-hit.png", dpi=110)
    plt.close(fig)


def classes(results: dict, out: Path) -> None:
    """One plot per workload class: req/s by output format, bare pyvips, ours and thumbor side by side."""
    data = results.get("classes") or {}
    for name, row in data.items():
        if not isinstance(row, dict) or "what" not in row:
            continue
        formats = [f for f in ("webp", "avif", "jpg") if row.get(f)]
        targets = ["bare", "ours", "thumbor"]
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        width = 0.8 / len(targets)
        for i, target in enumerate(targets):
            xs = [j + i * width for j in range(len(formats))]
            values = [(row[f].get(target) or {}).get("rps", 0) for f in formats]
            bars = ax.bar(xs, values, width, label="bare pyvips" if target == "bare" else target,
                          color=COLOURS.get(target))
            for bar, value, f in zip(bars, values, formats):
                if target != "bare" and value == 0 and target in row[f]:
                    ax.annotate("cannot read", (bar.get_x() + width / 2, 0), rotation=90, ha="center",
                                va="bottom", fontsize=7)
        ax.set_xticks([j + width for j in range(len(formats))], formats)
        ax.set_ylabel("requests / s")
        ax.set_title(f"{name}: {row['what']} (c={data.get('concurrency')})", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"bench-class-{name}.png", dpi=110)
        plt.close(fig)


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if results.get("miss"):
        miss(results, out)
    hit(results, out)
    classes(results, out)


if __name__ == "__main__":
    main()
