"""Make originals for a load test, split them into warm and cold ids, and warm the warm set.

    python loadtest/prepare.py --count 200 --cold 0.5 [--from DIR] [--warm http://127.0.0.1:8080]

Originals go below ``<originals>/loadtest/<run>/`` under a fresh run name, so the
cold ids of a new run were never rendered, even against a server that kept
every variant of earlier runs. The ids file (``LOADTEST_IDS``) lists them::

    {"warm": [...], "cold": [...], "warmed_mix": [[preset, format], ...]}

``--warm URL`` requests every warm id in every LOADTEST_MIX combo through that
server, so the run's warm requests are hits and only cold ones render.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import traffic

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".gif", ".tif", ".tiff"}


def generate(path: Path, rng: random.Random) -> Path:
    """A small, varied photo-like image: gradients and soft blotches, 400-1600 px on the long side."""
    import pyvips

    long_side = rng.randint(400, 1600)
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 3 / 4, 2 / 3])
    w, h = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    xy = pyvips.Image.xyz(w, h)
    bands = [
        (xy[0] * rng.uniform(0.2, 1.0) * 255 / w + rng.randint(0, 60)),
        (xy[1] * rng.uniform(0.2, 1.0) * 255 / h + rng.randint(0, 60)),
        # Noise made at 1/16 size and enlarged: blotches that cost an encoder some work,
        # for a fraction of full-size noise's time.
        pyvips.Image.gaussnoise(w // 16 + 1, h // 16 + 1, mean=rng.randint(60, 190), sigma=rng.randint(20, 60))
        .resize(16, kernel="linear").crop(0, 0, w, h),
    ]
    image = bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")
    suffix = rng.choices([".jpg", ".png", ".webp"], [8, 1, 1])[0]
    target = path.with_suffix(suffix)
    image.write_to_file(str(target) + ("[Q=85]" if suffix != ".png" else ""))
    return target


def copy_from(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"no images below {folder}")
    return [files[i % len(files)] for i in range(count)]


def warm(base_url: str, ids: list[str], combos: list[tuple[str, str]], concurrency: int) -> dict[str, int]:
    key = traffic.key()
    urls = [base_url.rstrip("/") + traffic.url((p, i, f), key) for i in ids for p, f in combos]
    counts: dict[str, int] = {}
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        def fetch(url: str) -> str:
            r = client.get(url)
            if r.status_code != 200:
                raise SystemExit(f"warming {url}: {r.status_code} {r.text[:200]}")
            return r.headers.get("x-imgproxy-tier", "200")

        with ThreadPoolExecutor(concurrency) as pool:
            for tier in pool.map(fetch, urls):
                counts[tier] = counts.get(tier, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="originals to make (default 200)")
    parser.add_argument("--cold", type=float, default=0.5, help="share of the ids kept cold (default 0.5)")
    parser.add_argument("--originals", type=Path, default=Path("data/originals"),
                        help="the server's local originals folder (default data/originals, as make run)")
    parser.add_argument("--from", dest="source", type=Path, help="copy images from this folder instead of generating")
    parser.add_argument("--warm", metavar="URL", help="render the warm set through this server")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel warm-up requests (default 4)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    run = time.strftime("%Y%m%d-%H%M%S") + f"-{rng.randrange(16**4):04x}"
    root = args.originals / "loadtest"
    if root.exists():
        shutil.rmtree(root)  # earlier runs' originals; their variants stay in the store
    folder = root / run
    folder.mkdir(parents=True)
    ids = []
    started = time.monotonic()
    sources = copy_from(args.source, args.count) if args.source else None
    for n in range(args.count):
        name = f"{n:05d}"
        if sources:
            shutil.copyfile(sources[n], (folder / name).with_suffix(sources[n].suffix.lower()))
        else:
            generate(folder / name, rng)
        ids.append(f"loadtest/{run}/{name}")
    n_cold = round(args.count * args.cold)
    shuffled = ids[:]
    rng.shuffle(shuffled)
    data = {"warm": shuffled[n_cold:], "cold": shuffled[:n_cold], "warmed_mix": None}
    print(f"{args.count} originals in {folder} ({time.monotonic() - started:.1f} s): "
          f"{len(data['warm'])} warm, {len(data['cold'])} cold")

    if args.warm:
        combos = [(p, f) for p, f, _ in traffic.mix()]
        started = time.monotonic()
        counts = warm(args.warm, data["warm"], combos, args.concurrency)
        data["warmed_mix"] = combos
        print(f"warmed {sum(counts.values())} variants through {args.warm} "
              f"({time.monotonic() - started:.1f} s): {counts}")
    out = traffic.ids_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"ids: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
