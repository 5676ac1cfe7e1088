"""``python -m bench``: run every case, write docs/BENCHMARKS.md and bench/results/latest.json.

The one place that wires the layers: the cases (bench/cases/, each on the
harness in bench/harness/) measure, and the report (bench/report/) writes the
page from the results file. ``--cases encoding --update --long`` runs the
encoding section alone with its full sweep and merges it into the existing
results.

``--smoke`` runs the same path on tiny inputs in seconds and writes into
``--out`` (a temp dir by default), never into docs/. A case that breaks is
recorded in the notes and the rest still run; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from imgproxy.config import Settings

from .cases import avif, breakdown, classes, encoding, extras, fanout, hits, miss, pool
from .harness import tools
from .harness.context import FULL, SMOKE, Bench, Profile
from .harness.inputs import PHOTO_SIZE, prepare
from .harness.paths import MAIN, RESULTS
from .report import ratios, write_docs

CASES = {"miss": miss.run, "breakdown": breakdown.run, "hit": hits.run, "memory": extras.memory, "warm": extras.warm,
         "isolation": extras.isolation, "fanout": fanout.run, "formats": extras.formats, "encoding": encoding.run,
         "classes": classes.run, "avif": avif.run, "pool": pool.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, a few requests, seconds")
    parser.add_argument("--out", help="write results here instead of docs/ and bench/results/")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of "
                        + ", ".join(CASES))
    parser.add_argument("--workers", type=int, default=2, help="processes per server (default 2)")
    parser.add_argument("--no-thumbor", action="store_true", help="skip thumbor entirely")
    parser.add_argument("--long", action="store_true",
                        help="the long sweeps too: encoding's full quality sweep (~30 min instead of ~5)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch dir")
    parser.add_argument("--update", action="store_true",
                        help="keep the other cases' results from the existing latest.json")
    parser.add_argument("--report-only", action="store_true",
                        help="re-write BENCHMARKS.md and the plots from the existing latest.json")
    parser.add_argument("--render-mode", choices=("thread", "process"),
                        help="ours' IMGPROXY_RENDER_MODE (default: the server's own default)")
    args = parser.parse_args(argv)

    profile = SMOKE if args.smoke else FULL
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="bench-out-"))
                                           if args.smoke else None)
    docs = out or MAIN / "docs"
    latest = out / "latest.json" if out else RESULTS
    if args.report_only:
        write_docs(json.loads(latest.read_text()), latest, docs)
        return 0
    scratch_parent = None if args.smoke else MAIN / "bench" / "work"
    if scratch_parent:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=scratch_parent))
    started = time.time()
    try:
        return _run(args, profile, work, docs, latest, started)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, profile: Profile, work: Path, docs: Path, latest: Path,
         started: float) -> int:
    install = not args.smoke
    apt = tools.ensure_apt_tools(install)
    if args.no_thumbor:
        thumbor_ok, why = False, "skipped (--no-thumbor)"
    else:
        thumbor_ok, why = tools.ensure_thumbor(install, work / "logs" / "thumbor-install.log")
    if not thumbor_ok:
        print(f"bench: thumbor rows will be missing: {why}", file=sys.stderr, flush=True)
    inputs = prepare(work / "originals", args.smoke)
    b = Bench(profile, inputs, work, work / "logs", args.workers, thumbor_ok, apt["nginx"], apt["wrk"],
              render_mode=args.render_mode or Settings.render_mode, long=args.long)
    results: dict = {
        "started": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": dataclasses.asdict(profile),
        "machine": tools.machine(),
        "workers": args.workers,
        "render_mode": b.render_mode,
        "thumbor": {"ok": thumbor_ok, "why": why},
        "inputs": {"photos": len(inputs.photos),
                   "photo_size": "173×115" if args.smoke else f"{PHOTO_SIZE[0]}×{PHOTO_SIZE[1]}"},
    }
    if args.update and latest.exists():
        previous = json.loads(latest.read_text())
        for name in set(CASES) - set(args.cases.split(",")):
            results[name] = previous.get(name, {})
        b.notes.extend(previous.get("notes", []))
        b.notes.append(f"{args.cases} re-measured at {results['started']}; the other cases are "
                       f"from the run of {previous['started']}")
        results["started"] = previous["started"]
        started -= previous.get("elapsed_s", 0)
    code = _code_digest()
    failed = False
    for name in args.cases.split(","):
        try:
            results[name] = CASES[name](b)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            b.notes.append(f"case {name} failed: {type(exc).__name__}: {str(exc).strip()[:300]}")
            results[name] = {}
    if _code_digest() != code:
        b.notes.insert(0, "**imgproxy/ changed while this run was going: servers and bare loops "
                          "started at different times ran different code. Re-run.**")
    results["code_digest"] = code
    results["notes"] = b.notes
    results["quiet_waited_s"] = round(b.waited)
    results["elapsed_s"] = round(time.time() - started, 1)
    results["ratios"] = ratios.compute(results)

    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    write_docs(results, latest, docs)
    print(f"bench: wrote {latest} and {docs / 'BENCHMARKS.md'} in {results['elapsed_s']:.0f} s",
          file=sys.stderr)
    return 1 if failed else 0


def _code_digest() -> str:
    """The server's source as measured; git's HEAD misses uncommitted edits in a shared tree."""
    digest = hashlib.sha256()
    for path in sorted((MAIN / "imgproxy").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


if __name__ == "__main__":
    sys.exit(main())
