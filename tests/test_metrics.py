"""metrics.py: what a render and a herd add to /metrics; Server-Timing on the render."""

from __future__ import annotations

import asyncio
import re
import time

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


def _histogram(text: str, outcome: str) -> dict[str, float]:
    """imgproxy_request_seconds of one outcome: count, sum and each bucket by its le."""
    found: dict[str, float] = {}
    for name, labels, value in re.findall(r"^imgproxy_request_seconds_(\w+)\{([^}]*)\} (\S+)$", text, re.M):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if parsed.get("outcome") == outcome:
            found[parsed["le"] if name == "bucket" else name] = float(value)
    return found


def test_request_seconds_by_outcome_memory_store_render_error(server_factory, tmp_path):
    variants = tmp_path / "shared-variants"
    one = server_factory(variants=variants)
    add_original(one, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = one.url("thumbnail", "p", "webp")
    assert one.get(url).headers["x-imgproxy-tier"] == "render"
    for _ in range(3):
        assert one.get(url).headers["x-imgproxy-tier"] == "memory"
    assert one.get(one.url("thumbnail", "nope", "webp")).status_code == 404
    two = server_factory(variants=variants)  # same folders, empty memory tier
    assert two.get(two.url("thumbnail", "p", "webp")).headers["x-imgproxy-tier"] == "store"

    text = one.get("/metrics").text
    render, memory, error = (_histogram(text, o) for o in ("render", "memory", "error"))
    assert render["count"] == 1 and render["sum"] > 0.001, render
    assert memory["count"] == 3 and memory["0.1"] == 3 and memory["+Inf"] == 3, memory
    assert memory["0.0001"] <= memory["0.001"] <= memory["0.01"]  # cumulative buckets from 0.1 ms
    assert error["count"] == 1, error
    assert _histogram(text, "store") == {} or _histogram(text, "store")["count"] == 0
    # Everything else (probes, this /metrics) is "other", never a variant tier.
    assert _histogram(text, "other")["count"] >= 1
    assert _histogram(two.get("/metrics").text, "store")["count"] == 1


def test_process_metrics_are_summed_over_the_server_processes(server_factory):
    server = server_factory(workers=2)
    # Each process samples itself when it starts; both answer soon enough.
    deadline = time.monotonic() + 20
    while server.metric("imgproxy_processes") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.metric("imgproxy_processes") == 2
    rss = server.metric("imgproxy_process_resident_memory_bytes")
    assert 2 * 10 * 2**20 < rss < 2 * 4 * 2**30, rss  # two Python processes with libvips loaded
    fds = server.metric("imgproxy_process_open_fds")
    assert 2 * 3 <= fds < 2 * 4096, fds
    cpu = server.metric("imgproxy_process_cpu_seconds_total")
    assert 0.05 < cpu < 600, cpu
    # prometheus_client's own process_* collector reads one process only: it is not exposed.
    assert "\nprocess_resident_memory_bytes" not in server.get("/metrics").text
