"""web/errors.py: every error is JSON, Starlette's own 404 and 405 included."""

from __future__ import annotations

import httpx


def test_unknown_paths_are_json_404s_with_the_short_ttl(server_factory):
    server = server_factory(env={"IMGPROXY_NOT_FOUND_MAX_AGE": "7"})
    for path in ("/nothing", "/v", "/healthz/x"):
        r = server.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "not_found", "detail": "no such path"}
        assert r.headers["cache-control"] == "public, max-age=7"
    assert server.get(server.url("thumbnail", "missing")).headers["cache-control"] == "public, max-age=7"
    r = httpx.post(server.base_url + "/metrics")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_root_is_a_json_404_outside_development(server_factory):
    server = server_factory(env={"IMGPROXY_ENV": "production"})
    r = server.get("/")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    head = httpx.head(server.base_url + "/")
    assert head.status_code == 404 and head.content == b""
