import base64
import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from imgproxy import sign_url
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


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_minted_urls_are_accepted(server_factory, tmp_path):
    from conftest import TESTIMAGES, add_original

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
