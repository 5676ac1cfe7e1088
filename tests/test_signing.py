"""Signatures: test vectors, other languages, key rotation, constant-time checks."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect
import json
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from imgproxy import sign_url, signing
from imgproxy.signing import SIGNATURE_LENGTH, canonical, sign, verify

VECTORS = json.loads((Path(__file__).parent / "vectors" / "signing.json").read_text())["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['preset']}-{v['format']}")
def test_vectors(v):
    assert sign_url(v["key"], v["preset"], v["id"], v["format"]) == v["url"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['preset']}-{v['format']}")
def test_vectors_match_the_documented_algorithm(v):
    message = f"{v['preset']}/{v['id']}.{v['format']}".encode()
    digest = hmac.new(v["key"].encode(), message, hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert v["url"].endswith("?s=" + expected)
    assert len(expected) == SIGNATURE_LENGTH


def test_every_key_verifies_first_signs():
    message = canonical("thumbnail", "a/b", "webp")
    old, new = "old-key", "new-key"
    assert verify([new, old], message, sign(old, message))
    assert verify([new, old], message, sign(new, message))
    assert not verify([new, old], message, sign("other", message))
    assert sign_url(new, "thumbnail", "a/b").endswith(sign(new, message))


def test_verify_rejects_garbage_without_raising():
    message = canonical("thumbnail", "a", "webp")
    for bad in ["", "x", "é" * 43, sign("k", message)[:-1], sign("k", message) + "A"]:
        assert not verify(["k"], message, bad)


def test_verify_compares_against_every_key(monkeypatch):
    """Constant time: no early exit on a match, every key is compared."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    message = canonical("thumbnail", "a", "webp")
    assert verify(["k1", "k2", "k3"], message, sign("k1", message))
    assert len(calls) == 3


NODE_MINT = r"""
const crypto = require('crypto');
const vectors = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8')).vectors;
const base = process.argv[3];
for (const v of vectors) {
  const path = `${v.preset}/${v.id}.${v.format}`;
  const sig = crypto.createHmac('sha256', v.key).update(path).digest('base64url');
  console.log(`${base}/v/${path}?s=${sig}`);
}
"""


def test_node_minted_urls_are_accepted(server_factory, tmp_path):
    from conftest import TESTIMAGES, add_original, require

    require("node")

    vectors_file = tmp_path / "vectors.json"
    server_vectors = [dict(v, key=v["key"]) for v in VECTORS if v["key"] == VECTORS[0]["key"]]
    vectors_file.write_text(json.dumps({"vectors": server_vectors}))
    script = tmp_path / "mint.js"
    script.write_text(NODE_MINT)
    originals = tmp_path / "originals"
    for v in server_vectors:
        add_original(originals, TESTIMAGES / "exif" / "mei__Nikon_D1X.jpg", v["id"])
    server = server_factory(originals=originals)
    out = subprocess.run(["node", str(script), str(vectors_file), server.base_url],
                         capture_output=True, text=True, check=True, timeout=30)
    urls = out.stdout.split()
    assert urls == [server.base_url + v["url"] for v in server_vectors]
    for url in urls:
        r = server.get(url)
        assert r.status_code == 200, r.text
    forged = urls[0][:-2] + ("AA" if not urls[0].endswith("AA") else "BB")
    assert server.get(forged).status_code == 403


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
