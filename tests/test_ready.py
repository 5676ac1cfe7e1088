"""web/ready.py: /readyz is 200 only when the stores answer and a worker renders."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import add_original, corpus, fill


def test_ready_when_everything_answers(server):
    r = server.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    assert r.headers["cache-control"] == "no-store"


def test_a_variant_store_that_cannot_be_written_is_not_ready(server_factory, tmp_path: Path):
    blocked = tmp_path / "variants-is-a-file"
    blocked.write_text("not a folder")
    server = server_factory(variants=blocked)
    r = server.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "not ready" and set(body["problems"]) == {"variants"}
    assert server.get("/healthz").status_code == 200  # alive all the same: liveness is not readiness


def test_a_missing_originals_folder_is_not_ready(server_factory, tmp_path: Path):
    server = server_factory(originals=(tmp_path / "gone").as_uri())
    r = server.get("/readyz")
    assert r.status_code == 503
    assert "does not exist" in r.json()["problems"]["originals"]
    assert "variants" not in r.json()["problems"]


def test_an_unreachable_s3_is_not_ready(server_factory, moto, bucket):
    server = server_factory(originals=f"s3://{bucket}/originals", variants=f"s3://{bucket}/variants",
                            env=moto.env(IMGPROXY_S3_TIMEOUT="1", IMGPROXY_S3_MAX_ATTEMPTS="1"))
    assert server.get("/readyz").status_code == 200
    moto.stop()
    try:
        import time

        time.sleep(1.1)  # past the cached answer
        r = server.get("/readyz")
        assert r.status_code == 503
        assert set(r.json()["problems"]) == {"originals", "variants"}
    finally:
        moto.start()


def test_a_variant_store_that_can_be_written_again_is_ready_again_without_a_miss(server_factory, tmpfs):
    """Out of rotation a server gets no misses: readiness probes a write itself once one failed."""
    mount = tmpfs("variants", "64k")
    server = server_factory(variants=mount)
    star = add_original(server, corpus("svg/linku__star.svg"), "star")
    fill(mount)
    assert server.get(server.url("thumbnail", star)).status_code == 200  # served, not stored
    r = server.get("/readyz")
    assert r.status_code == 503 and "writes fail" in r.json()["problems"]["variants"], r.text
    (mount / ".filler").unlink()
    time.sleep(1.1)  # past the cached answer
    assert server.get("/readyz").status_code == 200
