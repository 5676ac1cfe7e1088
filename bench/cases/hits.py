"""Hits: warm WebP variants from our memory tier, our store tier, nginx and thumbor.

nginx serves the very bytes ours rendered, as static files at the same paths
(it ignores the ``?s=`` query), so all four answer the same URLs with the
same bodies. Ours' tier mix during each wrk run is read from /metrics, so a
"memory" row that was really served from the store would show.

Latency under load is measured apart from wrk's saturated runs: once the
memory tier's sweep has found its peak rate, :func:`bench.harness.wrk.paced` sends hits at half
that rate (wrk with a pause between requests), and its p99 is the ``paced``
entry (issue 14: below 5 ms).
"""

from __future__ import annotations

import re
import sys
import urllib.request
from collections.abc import Callable

from bench.harness import servers, wrk
from bench.harness.context import Bench
from bench.harness.inputs import cold_ids
from bench.harness.paths import BENCH_PRESETS
from bench.harness.quiet import CpuWatch, least_disturbed
from bench.harness.stats import peak

FORMAT = "webp"
#: The paced run's rate, as a share of the memory tier's peak wrk rate.
PACED_SHARE = 0.5
_OUTCOME = re.compile(r'^imgproxy_requests_total\{outcome="(\w+)"\}\s+([0-9.e+]+)', re.M)


def run(b: Bench) -> dict:
    """``{target: {concurrency: summary}}`` plus ``tiers`` per ours target, and
    ``paced``: the memory tier at half its peak rate (:func:`_paced`)."""
    if not b.wrk:
        b.notes.append("hits: wrk is not installed, hit cases skipped")
        return {}
    p = b.profile
    ids = cold_ids(b.inputs, "hit", p.hit_urls)
    ours_paths = [b.ours_path(i, FORMAT) for i in ids]
    variants = b.work / "variants-hit"
    results: dict = {}

    with servers.ours(b.inputs.root, variants, BENCH_PRESETS, b.logs / "ours-hit-memory.log",
                      b.workers, render_mode=b.render_mode) as ours:
        _fill_memory(b, ours, ours_paths)
        results["ours-memory"] = _sweep(b, ours, ours_paths)
        results["paced"] = _paced(b, ours, ours_paths, PACED_SHARE * peak(results["ours-memory"]))
        static = b.work / "static"
        for path in ours_paths:
            out = static / path.split("?", 1)[0].lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(ours.base + path, timeout=30) as r:
                out.write_bytes(r.read())

    with servers.ours(b.inputs.root, variants, BENCH_PRESETS, b.logs / "ours-hit-store.log", b.workers,
                      memory_mb=0, render_mode=b.render_mode) as ours:
        b.client(ours.ports, ours_paths, 4, 120)
        results["ours-store"] = _sweep(b, ours, ours_paths)

    if b.nginx:
        with servers.nginx(static, b.work / "nginx", b.logs / "nginx.log", b.workers) as nginx:
            results["nginx"] = _sweep(b, nginx, ours_paths)
    else:
        b.notes.append("hits: nginx is not installed, its rows are missing")

    if b.thumbor:
        thumbor_paths = [b.thumbor_path(i, FORMAT) for i in ids]
        with servers.thumbor(b.inputs.root, b.work / "thumbor-hit", b.logs / "thumbor-hit.log",
                             b.workers, result_storage=True) as thumbor:
            for _ in range(2):  # the first pass renders and stores, the second proves it's stored
                b.client(thumbor.ports, thumbor_paths, 4, 120)
            results["thumbor-hits"] = _sweep(b, thumbor, thumbor_paths)
    return results


def _fill_memory(b: Bench, ours: servers.Server, paths: list[str]) -> None:
    """Each uvicorn worker has its own memory tier, and the kernel picks which
    worker takes a connection: request until three passes in a row are all memory."""
    streak = 0
    for _ in range(30):
        served = b.client(ours.ports, paths, 4, 120)["tiers"]
        streak = streak + 1 if set(served) == {"memory"} else 0
        if streak == 3:
            return
    b.notes.append("hits: the memory tier never answered a whole warm-up pass")


def _sweep(b: Bench, server: servers.Server, paths: list[str]) -> dict:
    listing = b.url_list(paths)
    out: dict = {}
    for c in b.profile.hit_concurrencies:
        r = _least_disturbed(b, server, lambda c=c: wrk.run(server.ports, listing, c, b.profile.hit_duration))
        out[str(c)] = r
        print(f"[hit]  c={c:<3} {server.name:12} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
              f"p99 {r['p99_ms']:7.2f} ms  foreign {r['foreign_cpu']:.0%}  {r.get('tiers', '')}",
              file=sys.stderr, flush=True)
    return out


def _paced(b: Bench, server: servers.Server, paths: list[str], rate: float) -> dict:
    """Latency at ``rate`` requests/s (:func:`bench.harness.wrk.paced`), the least disturbed of ``attempts`` runs."""
    if rate <= 0:
        return {}
    listing = b.url_list(paths)
    r = _least_disturbed(b, server, lambda: wrk.paced(server.ports, listing, rate, b.profile.hit_duration))
    r["share_of_peak"] = PACED_SHARE
    print(f"[hit]  paced {server.name:10} {r['rate']:9.0f} req/s asked, {r['rps']:9.1f} done  "
          f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  foreign {r['foreign_cpu']:.0%}  "
          f"{r.get('tiers', '')}", file=sys.stderr, flush=True)
    return r


def _least_disturbed(b: Bench, server: servers.Server, measure: Callable[[], dict]) -> dict:
    """``measure()`` with its CPU, foreign CPU and tier mix, repeated while another
    process disturbed it (up to ``attempts`` runs); the least disturbed run."""

    def attempt(_: int) -> dict:
        b.quiet()
        before = _tiers(server)
        with CpuWatch(server.pids) as cpu:
            r = measure()
        after = _tiers(server)
        r["foreign_cpu"] = cpu.foreign
        r["cpu_us_per_req"] = round(1e6 * cpu.target_s / max(1, r["requests"]), 1)
        if before is not None and after is not None:
            r["tiers"] = {k: int(after[k] - before.get(k, 0)) for k in after if after[k] - before.get(k, 0) > 0}
        return r

    return least_disturbed(b.profile.attempts, attempt, lambda r: r["foreign_cpu"])


def _tiers(server: servers.Server) -> dict[str, float] | None:
    """Our ``imgproxy_requests_total`` by outcome; None for servers without it."""
    if server.name != "ours":
        return None
    try:
        with urllib.request.urlopen(server.base + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {m[1]: float(m[2]) for m in _OUTCOME.finditer(text)}
