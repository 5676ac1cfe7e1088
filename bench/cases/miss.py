"""Miss: every request a cold variant, for bare pyvips, ours and thumbor.

The three run back to back at each (format, concurrency), so drift in the
machine hits them alike; if another process took more than a tenth of the
CPU during any of them, the three are repeated once the machine is quiet and
the cleaner attempt is kept. Each run gets its own fresh original names, so
ours can never answer from its store.
"""

from __future__ import annotations

import contextlib
import sys

from bench.harness import servers
from bench.harness.context import Bench
from bench.harness.inputs import cold_ids
from bench.harness.paths import BENCH_PRESETS
from bench.harness.quiet import NOISY, CpuWatch, least_disturbed
from bench.harness.stats import ms_per_request


def run(b: Bench) -> dict:
    """``{fmt: {target: {concurrency: summary}}}``."""
    p = b.profile
    results: dict = {fmt: {} for fmt in p.formats}
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(servers.ours(
            b.inputs.root, b.work / "variants-miss", BENCH_PRESETS, b.logs / "ours-miss.log", b.workers,
            render_mode=b.render_mode))
        contenders = {"bare": None, "ours": ours}
        if b.thumbor:
            contenders["thumbor"] = stack.enter_context(servers.thumbor(
                b.inputs.root, b.work / "thumbor-miss", b.logs / "thumbor-miss.log", b.workers,
                result_storage=False))
        _warm_up(b, contenders)
        for fmt in p.formats:
            for c in p.concurrencies:
                level = _level(b, contenders, fmt, c)
                for target, r in level.items():
                    results[fmt].setdefault(target, {})[str(c)] = r
    return results


def _level(b: Bench, contenders: dict, fmt: str, c: int) -> dict:
    """All contenders at one (format, concurrency); the least disturbed of ``attempts``."""

    def level(attempt: int) -> dict:
        b.quiet()
        return {target: _one(b, target, server, fmt, c, attempt) for target, server in contenders.items()}

    best = least_disturbed(b.profile.attempts, level, foreign)
    if foreign(best) >= NOISY:
        b.notes.append(f"miss {fmt} c={c}: other processes still used ≥{NOISY:.0%} of the CPU "
                       f"after {b.profile.attempts} attempts (see foreign_cpu in latest.json)")
    return best


def foreign(level: dict) -> float:
    """The most foreign CPU any contender's run at one level saw."""
    return max(r["foreign_cpu"] for r in level.values())


def _one(b: Bench, target: str, server: servers.Server | None, fmt: str, c: int,
         attempt: int) -> dict:
    p = b.profile
    ids = cold_ids(b.inputs, f"miss/{target}-{fmt}-c{c}-a{attempt}", p.miss_cap + 2)
    with CpuWatch(server.pids if server else None) as cpu:
        if server is None:
            r = b.bare(ids, fmt, c, p.miss_duration)
        elif target == "ours":
            r = b.client(server.ports, [b.ours_path(i, fmt) for i in ids], c, p.miss_duration)
        else:
            r = b.client(server.ports, [b.thumbor_path(i, fmt) for i in ids], c, p.miss_duration)
    r["cpu_ms_per_req"] = ms_per_request(r.pop("cpu_s", None) if server is None else cpu.target_s, r)
    r["foreign_cpu"] = cpu.foreign
    if target == "ours" and set(r.get("tiers", {})) - {"render"}:
        b.notes.append(f"miss {fmt} c={c}: ours answered some requests from {r['tiers']}, "
                       "not all by rendering")
    print(f"[miss] {fmt:4} c={c} {target:7} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
          f"p99 {r['p99_ms']:7.1f} ms  cpu {r['cpu_ms_per_req']} ms/req  "
          f"foreign {cpu.foreign:.0%}  errors {r['errors']}", file=sys.stderr, flush=True)
    return r


def _warm_up(b: Bench, contenders: dict) -> None:
    """First requests pay imports and encoder set-up; keep them off the clock."""
    for fmt in b.profile.formats:
        ids = cold_ids(b.inputs, f"miss/warmup-{fmt}", 4)
        for target, server in contenders.items():
            if target == "ours":
                b.client(server.ports, [b.ours_path(i, fmt) for i in ids], 2, 60)
            elif target == "thumbor":
                b.client(server.ports, [b.thumbor_path(i, fmt) for i in ids], 2, 60)
