"""web/canonical.py: a valid signature plus tracking parameters is a cacheable 308 to the canonical URL."""

from __future__ import annotations

import httpx
from conftest import add_original, corpus


def test_extra_parameters_with_a_valid_signature_redirect(server):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("thumbnail", "p", "webp")
    canonical = url.removeprefix(server.base_url)
    for query in ("&utm_source=x&utm_medium=social", "&fbclid=abc", ""):
        tracked = url.replace("?s=", "?utm_campaign=spring&s=") + query
        r = httpx.get(tracked)
        assert r.status_code == 308, r.text
        assert r.headers["location"] == canonical
        assert r.headers["cache-control"] == "public, max-age=86400"
    followed = httpx.get(url + "&utm_source=x", follow_redirects=True)
    assert followed.status_code == 200 and followed.headers["content-type"] == "image/webp"
    assert httpx.head(url + "&utm_source=x").status_code == 308
    assert server.metric('imgproxy_requests_total{outcome="redirect"}') == 5


def test_anything_else_keeps_its_answer(server):
    url = server.url("thumbnail", "p", "webp")
    sig = url.rsplit("=", 1)[1]
    forged = url[: -len(sig)] + ("A" if sig[0] != "A" else "B") + sig[1:]
    assert httpx.get(forged + "&utm_source=x").status_code == 400  # bad signature: no redirect
    assert httpx.get(url + "&s=" + sig).status_code == 400  # two signatures
    assert httpx.get(url.split("?")[0] + "?utm_source=x").status_code == 400  # none
    other = server.url("web", "p", "webp").rsplit("=", 1)[1]
    assert httpx.get(url.split("?")[0] + f"?s={other}&utm_source=x").status_code == 400  # another path's
