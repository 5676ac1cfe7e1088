"""imgproxy copy, purge, gc and du (imgproxy/cli/ops/): real CLI processes on local folders and moto S3."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, Moto

from imgproxy.cli.ops.copy import Etag
from imgproxy.formats import FORMATS
from imgproxy.presets import load_presets
from imgproxy.stores.s3 import PART_SIZE

PRESETS = load_presets(ROOT / "config" / "presets.toml")
WEB = PRESETS["web"].digest
THUMB = PRESETS["thumbnail"].digest
OLD = "0123456789ab"  # a digest no current preset has


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
            "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "imgproxy", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def run_json(*args: str, env: dict[str, str] | None = None) -> dict:
    out = run(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@dataclass
class Store:
    """A variant or originals store under test: its URL, and direct access to its objects."""

    url: str
    env: dict[str, str]
    put: Callable[[str, bytes], None]
    keys: Callable[[], set[str]]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        root = tmp_path / "store"
        root.mkdir()

        def put(key: str, body: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(body)

        return Store(root.as_uri(), {}, put, lambda: {p.relative_to(root).as_posix()
                                                      for p in root.rglob("*") if p.is_file()})
    moto: Moto = request.getfixturevalue("moto")
    bucket: str = request.getfixturevalue("bucket")
    client = moto.client()

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="v/")
        return {o["Key"][2:] for page in pages for o in page.get("Contents", ())}

    return Store(f"s3://{bucket}/v", moto.env(), lambda k, b: client.put_object(Bucket=bucket, Key="v/" + k, Body=b),
                 keys)


def variants_env(store: Store, tmp_path: Path) -> dict[str, str]:
    return {**store.env, "IMGPROXY_VARIANTS": store.url, "IMGPROXY_ORIGINALS": (tmp_path / "originals").as_uri()}


# --- copy ---------------------------------------------------------------------------------------


def test_etag_is_s3s_for_one_part_and_for_parts():
    body = os.urandom(PART_SIZE * 2 + 5)
    one, parts = Etag(0), Etag(PART_SIZE)
    for i in range(0, len(body), 1000_003):  # chunks that straddle the part boundaries
        one.update(body[i:i + 1000_003])
        parts.update(body[i:i + 1000_003])
    assert one.hexdigest() == hashlib.md5(body).hexdigest()
    digests = b"".join(hashlib.md5(body[i:i + PART_SIZE]).digest() for i in range(0, len(body), PART_SIZE))
    assert parts.hexdigest() == hashlib.md5(digests).hexdigest() + "-3"


def test_copy_local_to_s3_to_s3_to_local_is_idempotent(tmp_path: Path, moto: Moto, bucket: str):
    src = tmp_path / "src"
    files = {"a.jpg": b"a" * 10, "gallery/42/b.png": os.urandom(3000), "gallery/42/c": b"", "other/d.webp": b"d"}
    for key, body in files.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(body)
    (src / ".hidden").write_bytes(b"not an original")
    env = moto.env()
    s3a, s3b, back = f"s3://{bucket}/originals", f"s3://{bucket}/copy", tmp_path / "back"

    first = run_json("copy", src.as_uri(), s3a, env=env)
    assert (first["copied"], first["skipped"], first["failed"]) == (4, 0, 0)
    assert first["bytes"] == sum(map(len, files.values()))
    again = run_json("copy", src.as_uri(), s3a, env=env)
    assert (again["copied"], again["skipped"], again["bytes"]) == (0, 4, 0)

    assert run_json("copy", s3a, s3b, env=env)["copied"] == 4
    assert run_json("copy", s3a, s3b, env=env)["skipped"] == 4
    assert run_json("copy", s3b, back.as_uri(), env=env)["copied"] == 4
    assert run_json("copy", s3b, back.as_uri(), env=env)["skipped"] == 4
    assert {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()} == files

    # A changed original (same size) is copied again; --prefix limits the copy.
    (src / "gallery/42/b.png").write_bytes(os.urandom(3000))
    changed = run_json("copy", src.as_uri(), s3a, "--prefix", "gallery/", env=env)
    assert (changed["copied"], changed["skipped"]) == (1, 1)
    assert moto.client().get_object(Bucket=bucket, Key="originals/gallery/42/b.png")["Body"].read() \
        == (src / "gallery/42/b.png").read_bytes()

    # local to local compares content too
    assert run_json("copy", src.as_uri(), back.as_uri())["copied"] == 1
    assert run_json("copy", src.as_uri(), back.as_uri())["skipped"] == 4


def test_copy_prints_plain_progress_and_a_summary_without_a_tty(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.jpg").write_bytes(b"x")
    out = run("copy", src.as_uri(), (tmp_path / "dst").as_uri())
    assert out.returncode == 0, out.stderr
    assert "copy: 1/1 keys ETA 0:00 · copied 1 (1 B), skipped 0, failed 0" in out.stderr
    assert out.stdout.startswith("copied 1 (1 B), skipped 0, failed 0 in ")


def test_copy_refuses_http_stores(tmp_path: Path):
    out = run("copy", "https://example.com/images/", (tmp_path / "dst").as_uri())
    assert out.returncode == 2 and "only file:// and s3://" in out.stderr


def test_copy_reports_failures_and_exits_non_zero(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "a/x.jpg").write_bytes(b"x")
    (src / "b.jpg").write_bytes(b"b")
    dst.mkdir()
    (dst / "a").write_bytes(b"a file where the folder should be")
    out = run("copy", src.as_uri(), dst.as_uri(), "--json")
    summary = json.loads(out.stdout)
    assert out.returncode == 1
    assert (summary["copied"], summary["failed"]) == (1, 1) and "a/x.jpg" in summary["failures"]


_PEAK = """
import re, sys
from imgproxy.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
sys.stderr.write("peak-rss-kb %s\\n" % re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
sys.exit(code)
"""


def _copy_measuring_rss(src: str, dst: str, env: dict[str, str]) -> tuple[int, float]:
    """Peak RSS (bytes: VmHWM, which starts afresh at exec) and seconds of one copy process."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"), **env}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _PEAK, "copy", src, dst, "--json"], env=full,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and json.loads(out.stdout)["failed"] == 0, out.stdout + out.stderr
    peak = int(out.stderr.rpartition("peak-rss-kb ")[2].split()[0])
    return peak * 1024, time.monotonic() - started


@pytest.mark.slow
def test_copying_a_60_mb_file_streams_it_both_ways(tmp_path: Path, moto: Moto, bucket: str):
    src, back = tmp_path / "src", tmp_path / "back"
    src.mkdir()
    (src / "tiny.jpg").write_bytes(b"t")
    env = moto.env()
    baseline, _ = _copy_measuring_rss(src.as_uri(), f"s3://{bucket}/tiny", env)

    digest = hashlib.sha256()
    with open(src / "big.tif", "wb") as f:
        for _ in range(60):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
    up, up_s = _copy_measuring_rss(src.as_uri(), f"s3://{bucket}/o", env)
    head = moto.client().head_object(Bucket=bucket, Key="o/big.tif")
    assert head["ContentLength"] == 60 * 1024 * 1024 and head["ETag"].strip('"').endswith("-8")  # 8 MiB parts
    down, down_s = _copy_measuring_rss(f"s3://{bucket}/o", back.as_uri(), env)
    assert hashlib.sha256((back / "big.tif").read_bytes()).digest() == digest.digest()
    print(f"\n60 MiB copy: baseline peak RSS {baseline >> 20} MiB; local->S3 {up >> 20} MiB in {up_s:.1f} s; "
          f"S3->local {down >> 20} MiB in {down_s:.1f} s")
    # A part being filled and one being sent: some MiB over the baseline, never the whole file.
    assert up - baseline < 40 * 1024 * 1024
    assert down - baseline < 40 * 1024 * 1024
    # Re-runs skip it: the local file is hashed in 8 MiB parts to match the multipart ETag.
    assert run_json("copy", src.as_uri(), f"s3://{bucket}/o", env=env)["skipped"] == 2
    assert run_json("copy", f"s3://{bucket}/o", back.as_uri(), env=env)["skipped"] == 2


# --- purge, gc, du ------------------------------------------------------------------------------


def seed_variants(store: Store) -> dict[str, bytes]:
    variants = {
        f"web/{WEB}/gallery/1.webp": b"w" * 100,
        f"web/{WEB}/gallery/1.avif": b"w" * 60,
        f"web/{WEB}/gallery/2.webp": b"w" * 140,
        f"web/{OLD}/gallery/1.jpg": b"o" * 500,  # web before an edit
        f"thumbnail/{THUMB}/gallery/1.png": b"t" * 10,
        f"gone/{OLD}/gallery/1.webp": b"g" * 1000,  # a removed preset
        f"gone/{OLD}/x/y.webp": b"g" * 1000,
    }
    for key, body in variants.items():
        store.put(key, body)
    store.put(".locks/abc.lock", b"")
    store.put(".leases/web/x.webp", b"lease")
    return variants


def test_purge_deletes_every_format_and_digest_of_an_id(store: Store, tmp_path: Path):
    variants = seed_variants(store)
    env = variants_env(store, tmp_path)
    only_web = run_json("purge", "gallery/1", "--preset", "web", env=env)
    assert only_web["deleted"] == sorted([f"web/{WEB}/gallery/1.webp", f"web/{WEB}/gallery/1.avif",
                                          f"web/{OLD}/gallery/1.jpg"])
    out = run("purge", "gallery/1", env=env)
    assert out.returncode == 0, out.stderr
    assert f"deleted thumbnail/{THUMB}/gallery/1.png" in out.stdout and "purged 2 variants of 1 ids" in out.stdout
    assert store.keys() == {f"web/{WEB}/gallery/2.webp", f"gone/{OLD}/x/y.webp", ".locks/abc.lock",
                            ".leases/web/x.webp"}
    assert variants  # the rest is untouched
    assert run("purge", "../etc/passwd", env=env).returncode == 2
    typo = run("purge", "gallery/2", "--preset", "nope", env=env)
    assert typo.returncode == 2 and "unknown preset 'nope'" in typo.stderr, typo
    kept = store.keys()
    assert f"web/{WEB}/gallery/2.webp" in kept
    assert run("purge", "gallery/2", "--preset", "small", env=env).returncode == 0  # current, no folder yet
    assert run("purge", "x/y", "--preset", "gone", env=env).returncode == 0  # removed, its folder remains


def test_purge_cdn_without_a_cdn_deletes_nothing(store: Store, tmp_path: Path):
    seed_variants(store)
    env = variants_env(store, tmp_path)
    before = store.keys()
    out = run("purge", "gallery/1", "--cdn", env={**env, "IMGPROXY_CDN_PURGE": ""})
    assert out.returncode == 2 and "IMGPROXY_CDN_PURGE: purge --cdn needs at least one CDN" in out.stderr
    off = run("purge", "gallery/1", "--cdn", env={**env, "IMGPROXY_CDN_PURGE": "varnish:http://127.0.0.1:9",
                                                    "IMGPROXY_SURROGATE_KEY_HEADER": ""})
    assert off.returncode == 2 and "IMGPROXY_SURROGATE_KEY_HEADER" in off.stderr
    assert store.keys() == before  # settings are checked before anything is deleted


def test_gc_lists_stale_variants_and_deletes_them_only_with_apply(store: Store, tmp_path: Path):
    seed_variants(store)
    env = variants_env(store, tmp_path)
    before = store.keys()
    out = run("gc", env=env)
    assert out.returncode == 0, out.stderr
    assert f"gone/{OLD}/x/y.webp" in out.stdout and f"web/{OLD}/gallery/1.jpg" in out.stdout
    assert "3 stale variants, 2.5 kB: nothing deleted" in out.stdout
    assert f"web/{OLD}/: 1 variants, 500 B: preset changed (now {WEB})" in out.stdout
    assert store.keys() == before

    report = run_json("gc", "--apply", env=env)
    assert (report["count"], report["bytes"], report["deleted"]) == (3, 2500, 3)
    assert {(s["preset"], s["why"]) for s in report["stale"]} == {("gone", "preset removed"),
                                                                  ("web", f"preset changed (now {WEB})")}
    assert store.keys() == {f"web/{WEB}/gallery/1.webp", f"web/{WEB}/gallery/1.avif", f"web/{WEB}/gallery/2.webp",
                            f"thumbnail/{THUMB}/gallery/1.png", ".locks/abc.lock", ".leases/web/x.webp"}
    assert run_json("gc", env=env)["count"] == 0


def test_du_reports_usage_and_the_capacity_estimate(store: Store, tmp_path: Path):
    seed_variants(store)
    store.put("_meta/v1/gallery/1.json", b"{}" * 20)  # a metadata document: current, not stale
    originals = tmp_path / "originals"
    for i in range(10):
        (originals / f"gallery/{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (originals / f"gallery/{i}.jpg").write_bytes(b"o")
    env = variants_env(store, tmp_path)
    report = run_json("du", env=env)
    rows = {(r["preset"], r["format"]): (r["count"], r["bytes"]) for r in report["rows"]}
    assert rows == {("web", "webp"): (2, 240), ("web", "avif"): (1, 60), ("thumbnail", "png"): (1, 10)}
    assert (report["count"], report["bytes"], report["stale_count"], report["stale_bytes"]) == (4, 310, 3, 2500)
    assert (report["meta_count"], report["meta_bytes"]) == (1, 40)
    assert run_json("gc", env=env)["count"] == report["stale_count"]  # du's stale is what gc finds
    formats = len(FORMATS)
    assert report["originals"] == 10 and report["presets"] == len(PRESETS) and report["formats"] == formats
    assert report["estimate_bytes"] == round(10 * len(PRESETS) * formats * 310 / 4)

    out = run("du", "--originals", "1000", "--formats", "webp,avif", env=env)
    assert out.returncode == 0, out.stderr
    assert f"capacity estimate: 1000 originals × {len(PRESETS)} presets × 2 formats × 78 B mean = 2.2 MB" in out.stdout
    assert "stale (no current preset makes them; see imgproxy gc): 3 variants, 2.5 kB" in out.stdout
    assert "metadata documents (/meta/): 1, 40 B" in out.stdout
