"""The report: docs/BENCHMARKS.md and its plots, from a results file (bench/results/latest.json).

It reads plain results (JSON) and imports no case: ``ratios`` turns them into
the pass/fail table, ``benchmarks`` writes the page (with ``classes`` and
``encoding`` for those sections), and ``plot.py`` draws under a Python that
has matplotlib.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.harness.tools import plot_python

from . import benchmarks


def write_docs(results: dict, latest: Path, docs: Path) -> None:
    """``docs/BENCHMARKS.md`` and the plots from ``results`` (as saved in ``latest``)."""
    docs.mkdir(parents=True, exist_ok=True)
    plots = _plots(latest, docs)
    (docs / "BENCHMARKS.md").write_text(benchmarks.render(results, plots))


def _plots(latest: Path, docs: Path) -> list[str]:
    python = plot_python()
    if python is None:
        print("bench: no Python with matplotlib; plots skipped", file=sys.stderr)
        return []
    script = Path(__file__).with_name("plot.py")
    done = subprocess.run([python, str(script), str(latest), str(docs)], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        print(f"bench: plotting failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return []
    return [name for name in ("bench-miss.png", "bench-hit.png") if (docs / name).exists()] + sorted(
        path.name for path in docs.glob("bench-class-*.png"))
