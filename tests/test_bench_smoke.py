"""``python -m bench --smoke`` runs every benchmark case end to end in seconds.

It exercises the harness, not the numbers: each case must produce results of
the right shape, and ours must have rendered every miss.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke_writes_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=420,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())

    for fmt in ("jpg", "webp"):
        for target in ("bare", "ours"):
            run = results["miss"][fmt][target]["1"]
            assert run["requests"] > 0 and run["errors"] == 0, (fmt, target, run)
        assert set(results["miss"][fmt]["ours"]["1"]["tiers"]) == {"render"}
    if results["machine"].get("wrk", "not installed") != "not installed":
        memory = results["hit"]["ours-memory"]["2"]["tiers"]
        assert memory.get("memory", 0) >= 0.9 * sum(memory.values()), memory
        assert results["hit"]["ours-store"]["2"]["tiers"].keys() == {"store"}
    assert results["memory"]["peak_mb"] >= results["memory"]["idle_mb"] > 0
    assert {"available"} <= results["warm"].keys()
    assert {"available"} <= results["isolation"].keys()
    for name in ("raw", "heic"):  # one RAW and one HEIC row
        row = results["formats"][name]
        assert row["available"] and row["requests"] > 0 and row["errors"] == 0, (name, row)
        assert set(row["tiers"]) == {"render"}, row
    encoding = results["encoding"]
    assert set(encoding["auto"]) == {"jpg", "webp", "avif"} and set(encoding["avif_effort"]) == {"2", "3", "4"}
    assert all(s["met"] == s["count"] for a in encoding["auto"].values() for s in a["summary"].values())
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in results["pool"]["configs"].values())
    cases = {row["case"] for row in results["ratios"]["targets"]}
    assert "miss webp: ours ÷ bare pyvips" in cases
    # Workload classes (bench/cases/classes.py): bare and ours render every class; thumbor cannot read HEIC.
    for name in ("camera22", "heic12", "ai-dalle", "ai-sd", "thumb2mp", "gif"):
        for fmt in ("webp", "jpg"):
            for target in ("bare", "ours"):
                run = results["classes"][name][fmt][target]
                assert run["requests"] > 0 and run["errors"] == 0, (name, fmt, target, run)
        assert f"miss {name} webp: ours ÷ bare pyvips" in cases
    assert results["classes"]["gif"]["webp"]["ours"]["sample"]["frames"] > 1  # the animation is kept
    heic = next(r for r in results["ratios"]["targets"] if r["case"] == "miss heic12 webp: ours ÷ thumbor")
    assert heic["target"] is None and "cannot read" in heic["why"]
    for kind in ("render", "server"):  # per-process peaks of the memory case
        assert results["memory"][kind]["max_peak_mb"] > 0, results["memory"]
    assert set(results["avif"]["classes"]) >= {"camera22", "heic12"}
    assert (tmp_path / "BENCHMARKS.md").read_text().startswith("# Benchmarks")
