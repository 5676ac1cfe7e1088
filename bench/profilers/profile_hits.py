"""Where a hit spends its time: py-spy on one server process under wrk.

``python -m bench.profilers.profile_hits [--tier memory|store] [--out DIR]`` starts ours
with one worker, warms 64 WebP variants, runs wrk at c=8 and records the
worker with py-spy (installed in bench/.venv-thumbor). Writes collapsed
stacks and prints the top frames by own time and by total time. py-spy is
taken from PATH first.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.harness import servers, wrk
from bench.harness.context import FULL, Bench
from bench.harness.inputs import cold_ids, prepare
from bench.harness.paths import BENCH_PRESETS, THUMBOR_VENV

PY_SPY = Path(shutil.which("py-spy") or THUMBOR_VENV / "bin" / "py-spy")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profilers.profile_hits")
    parser.add_argument("--tier", choices=("memory", "store"), default="memory")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-profile-"))
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=out))
    b = Bench(FULL, prepare(work / "originals", smoke=True), work, work / "logs", 1, False, True, True)
    paths = [b.ours_path(i, "webp") for i in cold_ids(b.inputs, "hit", 64)]
    memory_mb = 0 if args.tier == "store" else None
    with servers.ours(b.inputs.root, work / "variants", BENCH_PRESETS, b.logs / "ours.log", 1,
                      memory_mb=memory_mb) as ours:
        for _ in range(3):
            b.client(ours.ports, paths, 4, 60)
        stacks = out / f"hit-{args.tier}.collapsed"
        load = threading.Thread(target=wrk.run, args=(ours.ports, b.url_list(paths), 8,
                                                      args.seconds + 2))
        load.start()
        subprocess.run([str(PY_SPY), "record", "--pid", str(ours.pid), "--duration",
                        str(args.seconds), "--format", "raw", "--output", str(stacks), "--nonblocking"],
                       check=True, capture_output=True)
        load.join()
    _summarise(stacks)


def _summarise(stacks: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        names = frames.split(";")
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    print(f"{samples} samples in {stacks}")
    for title, counter in (("own time", own), ("total time", total)):
        print(f"\ntop by {title}:")
        for name, n in counter.most_common(top):
            print(f"  {100 * n / samples:5.1f}%  {name}")


if __name__ == "__main__":
    sys.exit(main())
