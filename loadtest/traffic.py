"""The traffic model shared by prepare.py and locustfile.py; no locust imports.

Every knob is an environment variable (loadtest/README.md lists them). URLs are
minted here with the project's own ``sign_url`` and the server's first key.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from imgproxy import sign_url

DEFAULT_MIX = (
    "thumbnail/webp=30,thumbnail/avif=10,thumb-square/webp=15,"
    "web/webp=20,web/jpg=10,preview/webp=10,web/avif=5"
)

Variant = tuple[str, str, str]  # preset, id, format


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def key() -> str:
    """The server's signing key: the first of IMGPROXY_KEYS, else the development key file."""
    keys = [k.strip() for k in os.environ.get("IMGPROXY_KEYS", "").split(",") if k.strip()]
    if keys:
        return keys[0]
    path = Path(os.environ.get("IMGPROXY_DEV_KEY_FILE", "data/dev-key"))
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise SystemExit(f"no signing key: set IMGPROXY_KEYS, or IMGPROXY_DEV_KEY_FILE (not found: {path})") from None


def mix() -> list[tuple[str, str, float]]:
    """LOADTEST_MIX: ``preset/format=weight`` pairs, comma-separated."""
    spec = os.environ.get("LOADTEST_MIX", DEFAULT_MIX)
    out = []
    for item in spec.split(","):
        combo, _, weight = item.strip().partition("=")
        preset, _, fmt = combo.partition("/")
        if not preset or not fmt:
            raise SystemExit(f"LOADTEST_MIX: {item!r} is not preset/format=weight")
        out.append((preset, fmt, float(weight or 1)))
    return out


def ids_file() -> Path:
    return Path(os.environ.get("LOADTEST_IDS", "data/loadtest-ids.json"))


def load_ids() -> dict[str, list[str]]:
    path = ids_file()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path} not found: run loadtest/prepare.py first (or set LOADTEST_IDS)") from None


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.cumulative = list(itertools.accumulate(1 / (k + 1) ** s for k in range(n)))
        self.rng = rng

    def draw(self) -> int:
        return bisect.bisect_left(self.cumulative, self.rng.random() * self.cumulative[-1])


@dataclass
class Traffic:
    """Which variant the next request asks for.

    Warm requests draw an id by Zipf over the warm ids (the first is the most
    popular) and a preset/format by the mix. Cold requests ask for a variant
    nobody has asked for before: a cold id (never rendered) in a mix combo, each
    pair at most once, so every cold request is exactly one render.
    """

    warm: list[str]
    cold: list[str]
    combos: list[tuple[str, str]]
    weights: list[float]
    rng: random.Random
    zipf: Zipf
    cold_seen: list[Variant]

    @classmethod
    def from_env(cls, seed: int | None = None) -> Traffic:
        ids = load_ids()
        rng = random.Random(seed)
        m = mix()
        missing = {(p, f) for p, f, _ in m} - {tuple(c) for c in ids.get("warmed_mix", [])}
        if ids.get("warmed_mix") is not None and missing:
            raise SystemExit(f"LOADTEST_MIX has combos the warm set was not rendered in: {sorted(missing)}; "
                             "run prepare.py --warm again with this LOADTEST_MIX")
        cold = list(ids["cold"])
        rng.shuffle(cold)
        return cls(list(ids["warm"]), cold, [(p, f) for p, f, _ in m], [w for *_, w in m], rng,
                   Zipf(len(ids["warm"]), env_float("LOADTEST_ZIPF_S", 1.0), rng), [])

    def combo(self) -> tuple[str, str]:
        return self.rng.choices(self.combos, self.weights)[0]

    def warm_variant(self) -> Variant:
        preset, fmt = self.combo()
        return preset, self.warm[self.zipf.draw()], fmt

    def cold_variant(self) -> Variant | None:
        """A variant nobody asked for yet, or None when the cold pool is used up.

        The preset/format follows the mix; each combo walks the cold ids in a
        fixed shuffled order, so no pair is drawn twice.
        """
        live = [i for i, c in enumerate(self.combos) if self._next_cold[c] < len(self.cold)]
        if not live:
            return None
        preset, fmt = self.combos[self.rng.choices(live, [self.weights[i] for i in live])[0]]
        variant = (preset, self.cold[self._next_cold[(preset, fmt)]], fmt)
        self._next_cold[(preset, fmt)] += 1
        self.cold_seen.append(variant)
        return variant

    def __post_init__(self) -> None:
        self._next_cold = {combo: 0 for combo in self.combos}


def url(variant: Variant, signing_key: str) -> str:
    preset, id, fmt = variant
    return sign_url(signing_key, preset, id, fmt)
