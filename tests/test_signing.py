"""Signatures: every key tried with hmac.compare_digest, no early exit."""

from __future__ import annotations

import ast
import inspect
import statistics
import time

import pytest

from imgproxy import signing
from imgproxy.signing import sign, verify

KEYS = ("k1-0123456789abcdef0123456789abcdef", "k2-0123456789abcdef0123456789abcdef",
        "k3-0123456789abcdef0123456789abcdef")
MESSAGE = "thumbnail/gallery/42/photo.webp"


@pytest.fixture
def compares(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize("signature", [
    sign(KEYS[0], MESSAGE), sign(KEYS[1], MESSAGE), sign(KEYS[2], MESSAGE),
    "A" * 43, "", "short", "é" * 43, sign(KEYS[0], MESSAGE) + "x",
])
def test_every_key_is_compared_whatever_the_signature(compares: list, signature: str) -> None:
    expected = signature in {sign(k, MESSAGE) for k in KEYS}
    assert verify(KEYS, MESSAGE, signature) is expected
    assert len(compares) == len(KEYS)  # no early exit on a match or a bad length
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in compares)


def test_verify_compares_only_through_compare_digest() -> None:
    tree = ast.parse(inspect.getsource(signing.verify))
    comparisons = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)]
    assert comparisons == [], "signature bytes compared with ==/!=/in"
    early = [node for node in ast.walk(tree) if isinstance(node, (ast.Return, ast.Break))]
    assert len(early) == 1  # the single return at the end


def test_timing_does_not_depend_on_how_much_of_the_guess_is_right() -> None:
    """A coarse sanity check, not a proof: medians of many batches, wide bounds."""
    good = sign(KEYS[0], MESSAGE)
    guesses = {
        "right": good,
        "wrong-first": ("B" if good[0] != "B" else "C") + good[1:],
        "wrong-last": good[:-1] + ("B" if good[-1] != "B" else "C"),
        "all-wrong": "A" * 43,
    }

    def batch(signature: str) -> float:
        started = time.perf_counter()
        for _ in range(2000):
            verify(KEYS, MESSAGE, signature)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {name: [] for name in guesses}
    for _ in range(15):  # interleaved, so drift in machine load hits every guess alike
        for name, sig in guesses.items():
            times[name].append(batch(sig))
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < 1.5, medians
