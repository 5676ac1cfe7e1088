"""loadtest/: prepare originals, warm half, run real locust headless against a real server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import KEY, ROOT

pytestmark = pytest.mark.slow

COLD_FRACTION = 0.15
BAD_FRACTION = 0.02
MIX = "thumbnail/webp=3,web/jpg=1,thumb-square/avif=1"


def test_locust_run_renders_exactly_the_cold_variants(server, tmp_path):
    env = {
        **os.environ,
        "IMGPROXY_KEYS": KEY,
        "LOADTEST_IDS": str(tmp_path / "ids.json"),
        "LOADTEST_MIX": MIX,
        "LOADTEST_COLD_FRACTION": str(COLD_FRACTION),
        "LOADTEST_BAD_SIGNATURE_FRACTION": str(BAD_FRACTION),
        "LOADTEST_RECORD": str(tmp_path / "record.json"),
        "LOADTEST_SEED": "7",
    }
    prepare = subprocess.run(
        # Many cold ids: each cold request takes a variant never asked for, and a
        # fast run must not use them all up.
        [sys.executable, "loadtest/prepare.py", "--count", "240", "--cold", "0.85", "--seed", "1",
         "--originals", str(server.originals), "--warm", server.base_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert (len(ids["warm"]), len(ids["cold"])) == (36, 204)
    warm_renders = 36 * 3
    assert server.metric("imgproxy_renders_total") == warm_renders
    before = {o: server.metric(f'imgproxy_requests_total{{outcome="{o}"}}')
              for o in ("memory", "store", "render", "not_modified", "forbidden")}

    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
         "-u", "4", "-r", "4", "-t", "5s", "--stop-timeout", "30", "--host", server.base_url,
         "--csv", str(tmp_path / "lt"), "--only-summary"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    output = run.stdout + run.stderr
    print(output[-3000:])
    assert run.returncode == 0, output
    with (tmp_path / "lt_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 100 and int(total["Failure Count"]) == 0, total
    assert int(rows["GET bad signature (403)"]["Failure Count"]) == 0

    record = json.loads((tmp_path / "record.json").read_text())
    sent, cold = record["sent"], {tuple(v) for v in record["cold_variants"]}
    assert sent["cold_exhausted"] == 0, "the cold pool ran out; the split below would be wrong"
    assert len(cold) == sent["cold"] > 0
    assert all(id in ids["cold"] for _, id, _ in cold)

    # Every cold variant was rendered once; nothing else was rendered.
    assert server.metric("imgproxy_renders_total") - warm_renders == len(cold)
    delta = {o: server.metric(f'imgproxy_requests_total{{outcome="{o}"}}') - n for o, n in before.items()}
    assert delta["render"] == len(cold)
    assert delta["forbidden"] == sent["bad"]
    hits = delta["memory"] + delta["store"] + delta["not_modified"]
    miss_share = delta["render"] / (hits + delta["render"])
    expected = COLD_FRACTION / (1 - BAD_FRACTION)
    print(f"origin: {hits:.0f} hits, {delta['render']:.0f} misses ({miss_share:.1%}, expected {expected:.1%})")
    assert abs(miss_share - expected) < 0.06
    assert record["origin"]["render"] == delta["render"]  # the locustfile's own reading agrees
