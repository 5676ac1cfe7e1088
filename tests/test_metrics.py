"""metrics.py: what a render and a herd add to /metrics; Server-Timing on the render."""

from __future__ import annotations

import asyncio
import re

import httpx
from conftest import add_original, corpus


def test_a_herd_counts_one_render_and_the_rest_as_joined_or_hits(server_factory):
    server = server_factory(workers=1)
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("web", "p", "avif")

    async def herd() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=30)) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(30)))

    responses = asyncio.run(herd())
    assert [r.status_code for r in responses] == [200] * 30
    outcome = {o: server.metric(f'imgproxy_requests_total{{outcome="{o}"}}') for o in ("render", "joined", "memory")}
    assert server.metric("imgproxy_renders_total") == 1
    assert outcome["render"] == 1, outcome
    assert outcome["joined"] >= 1 and sum(outcome.values()) == 30, outcome
    assert server.metric('imgproxy_leases_total{outcome="taken"}') == 1  # the local folder's flock
    timed = [r for r in responses if "server-timing" in r.headers]
    assert len(timed) == 1  # only the request that rendered
    assert all(r.headers["x-imgproxy-tier"] == "render" for r in responses if r not in timed and
               r.headers["x-imgproxy-tier"] != "memory")


def test_server_timing_and_the_new_metrics(server):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("thumbnail", "p", "webp")
    first = server.get(url)
    names = dict(re.findall(r"(\w+);dur=([\d.]+)", first.headers["server-timing"]))
    assert set(names) == {"lease", "fetch", "queue", "render", "store"}
    assert float(names["render"]) > 0
    assert "server-timing" not in server.get(url).headers  # a hit costs nothing extra
    text = server.get("/metrics").text
    assert 'imgproxy_store_seconds_count{operation="fetch",store="local"} 1.0' in text
    assert 'imgproxy_store_seconds_count{operation="put",store="local"} 1.0' in text
    assert 'imgproxy_store_seconds_count{operation="get",store="local"} 1.0' in text
    assert "imgproxy_renders_in_flight 0.0" in text and "imgproxy_render_queue 0.0" in text
    source = corpus("exif/mei__Nikon_D1X.jpg").stat().st_size
    assert server.metric("imgproxy_source_bytes_total") == source
    assert server.metric('imgproxy_variant_bytes_total{format="webp"}') == len(first.content)
    # Label values stay bounded: an unknown preset or an id never becomes one.
    server.get(server.url("no-such-preset", "secret/id", "webp"))
    assert "no-such-preset" not in server.get("/metrics").text and "secret" not in server.get("/metrics").text
