"""Ingest: PUT /o/<id> and imgproxy put, on real servers, real stores (local and moto's S3), real workers."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import KEY, ROOT, Moto, Server, corpus, fill, read_only

PHOTO = "exif/mei__Apple_iPhone_4.jpg"
OTHER = "exif/exifsamples__Canon_40D.jpg"
TOKEN = "ingest-token-0123456789abcdefghijklmnop"
TOKENS = {"IMGPROXY_INGEST_TOKENS": f"old-token-0123456789abcdefghijklmnopq,{TOKEN}"}
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory(env=TOKENS)


def put(server: Server, id: str, body: bytes, query: str = "", headers: dict[str, str] | None = None
        ) -> httpx.Response:
    return httpx.put(f"{server.base_url}/o/{id}{query}", content=body,
                     headers=AUTH if headers is None else headers, timeout=120)


def stored(server: Server) -> list[str]:
    """Every file in the originals folder (dot-files included), relative."""
    return sorted(str(p.relative_to(server.originals)) for p in server.originals.rglob("*") if p.is_file())


def test_put_a_camera_photo_renders_and_answers_with_urls(server: Server) -> None:
    body = corpus(PHOTO).read_bytes()
    r = put(server, "cam/iphone4", body, "?render=thumbnail,web&wait=1")
    assert r.status_code == 201, r.text
    got = r.json()
    print("\nPUT /o/cam/iphone4:", json.dumps({k: v for k, v in got.items() if k != "urls"}))
    assert got["id"] == "cam/iphone4" and got["status"] == "created"
    assert got["bytes"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest()
    assert (got["width"], got["height"], got["format"], got["frames"]) == (1296, 968, "jpeg", 1)
    assert got["render"]["state"] == "done" and got["render"]["rendered"] == 4  # 2 presets x webp, avif
    assert (server.originals / "cam/iphone4").read_bytes() == body
    assert (server.originals / "cam/.iphone4.sha256").read_text().split()[0] == got["sha256"]
    # The signed URLs answer, and the eager renders are not rendered again.
    thumb = httpx.get(got["urls"]["thumbnail"]["webp"], timeout=30)
    assert thumb.status_code == 200 and thumb.headers["x-imgproxy-tier"] in ("memory", "store")
    assert set(got["urls"]) >= {"thumbnail", "web", "preview"} and set(got["urls"]["web"]) == {"webp", "avif"}


def test_the_same_bytes_again_is_200_other_bytes_409(server: Server) -> None:
    body = corpus(PHOTO).read_bytes()
    assert put(server, "p", body, "?render=none").status_code == 201
    again = put(server, "p", body, "?render=none")
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    other = put(server, "p", corpus(OTHER).read_bytes(), "?render=none")
    assert other.status_code == 409 and other.json()["error"] == "conflict"
    assert (server.originals / "p").read_bytes() == body


def test_replace_gives_new_bytes_a_new_id_and_old_urls_keep_their_bytes(server: Server) -> None:
    old, new = corpus(PHOTO).read_bytes(), corpus(OTHER).read_bytes()
    first = put(server, "gallery/1", old, "?render=thumbnail&wait=1").json()
    before = httpx.get(first["urls"]["thumbnail"]["webp"], timeout=30)
    assert before.status_code == 200
    r = put(server, "gallery/1", new, "?replace=1&render=thumbnail&wait=1")
    assert r.status_code == 201, r.text
    replaced = r.json()
    version = "gallery/1.v" + hashlib.sha256(new).hexdigest()[:12]
    assert replaced["id"] == version and replaced["replaces"] == "gallery/1" and replaced["status"] == "replaced"
    # The old URL still means the old bytes (memory, store: the same ETag); the new one is another URL.
    assert replaced["urls"]["thumbnail"]["webp"] != first["urls"]["thumbnail"]["webp"]
    after = httpx.get(first["urls"]["thumbnail"]["webp"], timeout=30)
    assert after.content == before.content and after.headers["etag"] == before.headers["etag"]
    fresh = httpx.get(replaced["urls"]["thumbnail"]["webp"], timeout=30)
    assert fresh.status_code == 200 and fresh.content != before.content
    assert (server.originals / "gallery/1").read_bytes() == old
    # Replacing a version swaps the suffix; the same bytes again are idempotent.
    again = put(server, version, new, "?replace=1&render=none")
    assert again.status_code == 200 and again.json()["id"] == version
    back = put(server, version, old, "?replace=1&render=none").json()
    assert back["id"] == "gallery/1.v" + hashlib.sha256(old).hexdigest()[:12]


def test_background_renders_land_in_the_store(server: Server) -> None:
    r = put(server, "bg", corpus(PHOTO).read_bytes(), "?render=thumbnail")
    assert r.status_code == 201 and r.json()["render"]["state"] == "queued"
    deadline = time.monotonic() + 60
    while len(list(server.variants.rglob("bg.*"))) < 2:
        assert time.monotonic() < deadline, "background renders never landed"
        time.sleep(0.2)


def test_auth(server_factory: Callable[..., Server]) -> None:
    off = server_factory()
    r = put(off, "p", b"x")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    on = server_factory(env=TOKENS)
    body = corpus(PHOTO).read_bytes()
    assert put(on, "p", body, headers={}).status_code == 401
    assert put(on, "p", body, headers={"authorization": "Basic abc"}).status_code == 401
    bad = put(on, "p", body, headers={"authorization": "Bearer wrong"})
    assert bad.status_code == 403 and bad.json()["error"] == "forbidden"
    assert not stored(on)
    old_token = {"authorization": "Bearer " + TOKENS["IMGPROXY_INGEST_TOKENS"].split(",")[0]}
    assert put(on, "p", body, "?render=none", headers=old_token).status_code == 201
    # GET /o/ is not ours (original downloads are): it does not reach the upload endpoint.
    assert httpx.get(f"{on.base_url}/o/p", headers=AUTH).status_code in (403, 404, 405)


def test_bad_uploads_get_4xx_json_and_store_nothing(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    server = server_factory(env={**TOKENS, "IMGPROXY_MAX_SOURCE_PIXELS": "1000000",
                                 "IMGPROXY_MAX_SOURCE_BYTES": str(2 * 1024 * 1024)})
    photo = corpus(PHOTO).read_bytes()
    cases = [
        ("text", b"hello, this is not an image" * 100, "", 415, "unsupported_format"),
        ("bmp", corpus("misc/libvips__small.bmp").read_bytes(), "", 415, "unsupported_format"),
        ("pixels", corpus("large/mei__Issue_266.jpg").read_bytes()[:2 * 1024 * 1024], "", 413, "too_large"),
        ("truncated", photo[:300], "", 422, "undecodable"),
        ("bytes", photo * 8, "", 413, "too_large"),
        ("bad:id", photo, "", 400, "bad_request"),
        ("a//b", photo, "", 400, "bad_request"),
        ("q", photo, "?render=nosuch", 400, "bad_request"),
        ("q2", photo, "?color=red", 400, "bad_request"),
        ("empty", b"", "", 400, "bad_request"),
    ]
    for id, body, query, status, error in cases:
        r = put(server, id, body, query)
        assert (r.status_code, r.json()["error"]) == (status, error), (id, r.text)
        assert r.headers["content-type"] == "application/json"
    frames = put(server, "frames", corpus("bomb/weserv__1024-pages.gif").read_bytes())
    assert frames.status_code == 413 and frames.json()["limit"] in ("max_frames", "max_source_pixels"), frames.text
    assert not stored(server)
    small = corpus("color/weserv__basn3p08.png").read_bytes()
    assert put(server, "ok", small, "?render=none").status_code == 201  # still serving


def test_pixel_limit_names_the_setting(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={**TOKENS, "IMGPROXY_MAX_SOURCE_PIXELS": "1000000"})
    r = put(server, "big", corpus(PHOTO).read_bytes())
    assert r.status_code == 413 and r.json()["limit"] == "max_source_pixels"
    assert not stored(server)


def _raw_put(server: Server, id: str, headers: dict[str, str]) -> socket.socket:
    host, port = urlsplit(server.base_url).hostname, urlsplit(server.base_url).port
    sock = socket.create_connection((host, port))
    lines = [f"PUT /o/{id} HTTP/1.1", f"Host: {host}:{port}", f"Authorization: Bearer {TOKEN}",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def test_short_body_and_disconnect_store_nothing(server: Server) -> None:
    photo = corpus(PHOTO).read_bytes()
    sock = _raw_put(server, "short", {"Content-Length": str(len(photo))})
    sock.sendall(photo[:len(photo) // 2])
    sock.close()  # gone mid-upload
    sock = _raw_put(server, "chunked", {"Transfer-Encoding": "chunked"})
    sock.sendall(b"%x\r\n" % 100000 + photo[:100000] + b"\r\n")
    sock.close()
    time.sleep(1)
    assert not stored(server)
    assert put(server, "short", photo, "?render=none").status_code == 201


def _hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` so far, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _stream(sock: socket.socket, total: int, chunked: bool) -> tuple[int, bytes]:
    """Send up to ``total`` bytes until the server answers; (bytes sent, the answer)."""
    chunk = os.urandom(1024 * 1024)
    sent = 0
    sock.setblocking(False)
    answer = b""
    while sent < total:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            break
        if writable:
            data = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") if chunked else chunk
            try:
                n = sock.send(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += n if not chunked else len(chunk)
            if chunked and n < len(data):
                sock.setblocking(True)
                sock.sendall(data[n:])
                sock.setblocking(False)
    sock.setblocking(True)
    sock.settimeout(30)
    try:
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 10:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return sent, answer


@pytest.mark.slow
def test_a_200_mb_upload_is_refused_with_bounded_memory(server: Server) -> None:
    pid = server.proc.pid
    assert put(server, "warmup", corpus(PHOTO).read_bytes(), "?render=none").status_code == 201
    before = _hwm(pid)
    total = 200 * 1024 * 1024
    # Announced: refused before the body is read.
    sock = _raw_put(server, "announced", {"Content-Length": str(total), "Content-Type": "image/jpeg"})
    sent, answer = _stream(sock, total, chunked=False)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Not announced (chunked, JPEG magic first): refused once 64 MiB have streamed in.
    sock = _raw_put(server, "streamed", {"Transfer-Encoding": "chunked"})
    sock.sendall(b"%x\r\n" % 3 + b"\xff\xd8\xff" + b"\r\n")
    sent2, answer2 = _stream(sock, total, chunked=True)
    assert answer2.startswith(b"HTTP/1.1 413"), answer2[:200]
    peak = _hwm(pid)
    print(f"\n200 MB uploads refused: announced after {sent / 2**20:.0f} MiB sent, streamed after "
          f"{sent2 / 2**20:.0f} MiB; server peak RSS {before / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB after")
    assert sent2 < total  # cut off, not read to the end
    assert peak - before < 48 * 1024 * 1024
    assert stored(server) == [".warmup.sha256", "warmup"]


def test_s3_upload_records_the_hash_and_never_overwrites(server_factory: Callable[..., Server], moto: Moto,
                                                          bucket: str) -> None:
    server = server_factory(originals=f"s3://{bucket}/originals", variants=f"s3://{bucket}/variants",
                            env=moto.env(**TOKENS))
    body = corpus(PHOTO).read_bytes()
    r = put(server, "s3/photo", body, "?render=thumbnail&wait=1")
    assert r.status_code == 201 and r.json()["render"]["rendered"] == 2, r.text
    head = moto.client().head_object(Bucket=bucket, Key="originals/s3/photo")
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert put(server, "s3/photo", body).status_code == 200
    assert put(server, "s3/photo", corpus(OTHER).read_bytes()).status_code == 409
    assert httpx.get(r.json()["urls"]["web"]["webp"], timeout=60).status_code == 200


def _sample(server: Server, name: str, labels: str) -> float:
    prefix = f"{name}{{{labels}}} "
    return sum(float(line.rsplit(" ", 1)[1]) for line in server.get("/metrics").text.splitlines()
               if line.startswith(prefix))


def test_eager_renders_use_the_uploads_own_bytes_not_the_stored_copy(server_factory: Callable[..., Server],
                                                                     moto: Moto, bucket: str) -> None:
    server = server_factory(originals=f"s3://{bucket}/originals", variants=f"s3://{bucket}/variants",
                            env=moto.env(**TOKENS))
    fetches = 'operation="fetch",store="s3"'

    def gets() -> int:  # GetObject of the original, in moto's access log
        return moto.log.read_text(errors="replace").count(f'"GET /{bucket}/originals/s3/eager HTTP')

    r = put(server, "s3/eager", corpus(PHOTO).read_bytes(), "?render=thumbnail&wait=1")
    assert r.status_code == 201 and r.json()["render"]["rendered"] == 2, r.text
    assert gets() == 0 and _sample(server, "imgproxy_store_seconds_count", fetches) == 0  # not read back
    # A live miss fetches it: its variant names the same original as the eager ones.
    assert httpx.get(r.json()["urls"]["web"]["webp"], timeout=60).status_code == 200
    assert gets() == 1 and _sample(server, "imgproxy_store_seconds_count", fetches) == 1
    client = moto.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="variants/")["Contents"]
            if "/s3/eager." in o["Key"]]
    sources = {client.head_object(Bucket=bucket, Key=key)["Metadata"]["source"] for key in keys}
    assert len(keys) == 3 and len(sources) == 1, (keys, sources)


def test_s3_multipart_upload(server_factory: Callable[..., Server], moto: Moto, bucket: str) -> None:
    import pyvips

    server = server_factory(originals=f"s3://{bucket}/o", variants=f"s3://{bucket}/v", env=moto.env(**TOKENS))
    body = pyvips.Image.gaussnoise(3000, 2000).cast("uchar").bandjoin([128, 64]).copy(
        interpretation="srgb").jpegsave_buffer(Q=100)
    assert len(body) > 8 * 1024 * 1024  # more than one S3 part
    r = put(server, "big", body, "?render=none")
    assert r.status_code == 201, r.text
    head = moto.client().head_object(Bucket=bucket, Key="o/big")
    assert head["ETag"].strip('"').endswith("-2") and head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert put(server, "big", body[:-2] + b"\x00\x00").status_code == 409


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"),
            "IMGPROXY_KEYS": KEY, "IMGPROXY_ORIGINALS": (tmp_path / "o").as_uri(),
            "IMGPROXY_VARIANTS": (tmp_path / "v").as_uri(), "IMGPROXY_DEV_KEY_FILE": str(tmp_path / "dk"),
            "IMGPROXY_RENDER_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "imgproxy", "put", *args], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_cli_put_locally_and_via_a_server(tmp_path: Path, server: Server) -> None:
    files = [str(corpus(PHOTO)), str(corpus(OTHER))]
    out = _cli(tmp_path, *files, "--prefix", "cli/", "--render", "thumbnail", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(x["id"], x["status"], x["render"]["state"]) for x in lines] == [
        ("cli/mei__Apple_iPhone_4", "created", "done"), ("cli/exifsamples__Canon_40D", "created", "done")]
    assert (tmp_path / "o/cli/mei__Apple_iPhone_4").read_bytes() == corpus(PHOTO).read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("not an image")
    out = _cli(tmp_path, str(bad))
    assert out.returncode == 1 and "415" in out.stderr
    via = _cli(tmp_path, str(corpus(PHOTO)), "--id", "over/http", "--render", "none", "--via", server.base_url,
               "--json", env={"MY_TOKEN": TOKEN}, )
    assert via.returncode == 1  # no token in IMGPROXY_INGEST_TOKENS and no --token-env: 401
    via = _cli(tmp_path, str(corpus(PHOTO)), "--id", "over/http", "--render", "none", "--via", server.base_url,
               "--json", "--token-env", "MY_TOKEN", env={"MY_TOKEN": TOKEN})
    assert via.returncode == 0, via.stderr + via.stdout
    assert json.loads(via.stdout)["status_code"] == 201
    assert (server.originals / "over/http").read_bytes() == corpus(PHOTO).read_bytes()


def test_a_404_before_the_upload_is_kept_only_briefly(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={**TOKENS, "IMGPROXY_NOT_FOUND_MAX_AGE": "2"})
    early = httpx.get(server.url("thumbnail", "soon"), timeout=30)
    assert early.status_code == 404 and early.headers["cache-control"] == "public, max-age=2"
    assert put(server, "soon", corpus(PHOTO).read_bytes(), "?render=none").status_code == 201
    assert httpx.get(server.url("thumbnail", "soon"), timeout=30).status_code == 200  # no 404 kept inside


def _download(server: Server, id: str) -> httpx.Response:
    from imgproxy.urls import original_url

    return httpx.get(original_url(KEY, id, int(time.time()) + 3600, False, server.base_url), timeout=30)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_upload_never_gives_an_existing_id_a_second_meaning(where: str, server_factory: Callable[..., Server],
                                                                moto: Moto, bucket: str) -> None:
    if where == "s3":
        server = server_factory(originals=f"s3://{bucket}/o", variants=f"s3://{bucket}/v", env=moto.env(**TOKENS))
    else:
        server = server_factory(env=TOKENS)
    red, green = corpus(PHOTO).read_bytes(), corpus(OTHER).read_bytes()
    assert put(server, "y.png", red, "?render=none").status_code == 201
    before = httpx.get(server.url("thumbnail", "y"), timeout=30)
    assert before.status_code == 200
    # y resolves to y.png: neither y.jpg nor y itself may now mean other bytes.
    for id in ("y.jpg", "y", "y.png"):
        r = put(server, id, green, "?render=none")
        assert r.status_code == 409 and r.json()["error"] == "conflict", (id, r.text)
    assert _download(server, "y").content == red
    # The other way round: an extension-less key, then an id with an extension beside it.
    assert put(server, "z", red, "?render=none").status_code == 201
    assert put(server, "z.png", green, "?render=none").status_code == 409
    # The same bytes under a second name change nothing, so they are stored.
    same = put(server, "y.jpg", red, "?render=none")
    assert same.status_code == 201 and same.json()["key"] == "y.jpg", same.text
    assert _download(server, "y").content == red
    assert _download(server, "y.jpg").content == red
    assert _download(server, "z").content == red
    again = httpx.get(server.url("thumbnail", "y"), timeout=30)
    assert again.status_code == 200 and again.content == before.content


def test_an_id_the_folder_cannot_hold_is_400_and_leaves_nothing(server: Server) -> None:
    body = corpus(PHOTO).read_bytes()
    assert put(server, "p/a", body, "?render=none").status_code == 201
    assert put(server, "q/a/b", body, "?render=none").status_code == 201
    before = stored(server)
    long = "n" * 247  # the longest name that leaves room for .<name>.sha256 (255 bytes)
    refused = {"p/a/b": "p/a is an original", "q/a": "q/a is a folder",
               **{f"{folder}/{'n' * size}": "segment of the id" for size in (248, 249, 250, 251, 256)
                  for folder in ("p", "s")}}
    for id, detail in refused.items():
        r = put(server, id, body, "?render=none")
        assert r.status_code == 400 and r.json()["error"] == "bad_request", (len(id), r.text)
        assert detail in r.json()["detail"], r.text
    assert stored(server) == before  # no original, no side file, no .tmp-* left
    assert put(server, f"s/{long}", body, "?render=none").status_code == 201
    assert (server.originals / f"s/.{long}.sha256").is_file()


def test_an_upload_reports_the_upright_size_as_meta_and_variants_do(server: Server) -> None:
    """A phone photo stored 2576 x 1932 with EXIF orientation 6 is 1932 x 2576 upright."""
    import pyvips

    from imgproxy.urls import meta_url

    r = put(server, "phone/samsung", corpus("exif/mei__Samsung_SM-J327T1.jpg").read_bytes(), "?render=none")
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["width"], got["height"]) == (1932, 2576)
    meta = httpx.get(meta_url(KEY, "phone/samsung", server.base_url), timeout=60).json()
    assert (meta["width"], meta["height"]) == (got["width"], got["height"])
    variant = httpx.get(got["urls"]["web"]["webp"], timeout=60)
    assert variant.status_code == 200
    image = pyvips.Image.new_from_buffer(variant.content, "")
    assert image.height > image.width  # portrait, like the sizes reported


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_full_originals_store_is_507_leaves_nothing_and_is_not_ready(
        server_factory: Callable[..., Server], tmpfs: Callable[..., Path]) -> None:
    originals = tmpfs("originals", "2m")
    server = server_factory(originals=originals, env=TOKENS)
    fill(originals)
    r = put(server, "cam/photo", corpus(PHOTO).read_bytes(), "?render=none")
    assert r.status_code == 507, r.text
    assert r.json() == {"error": "insufficient_storage", "detail": "the originals folder is full", "reason": "full"}
    assert files(originals) == [".filler"]  # no temp file, no hash file, no original
    assert server.metric('imgproxy_disk_errors_total{folder="originals",reason="full"}') == 1
    ready = server.get("/readyz")
    assert ready.status_code == 503 and "is full" in ready.json()["problems"]["originals"]
    (originals / ".filler").unlink()
    assert put(server, "cam/photo", corpus(PHOTO).read_bytes(), "?render=none").status_code == 201
    time.sleep(1.1)  # past the cached answer
    assert server.get("/readyz").status_code == 200


def test_a_read_only_originals_store_is_503_and_not_ready_with_uploads_on(
        server_factory: Callable[..., Server], tmpfs: Callable[..., Path]) -> None:
    originals = tmpfs("originals", "2m")
    uploads = server_factory(originals=originals, env=TOKENS)
    reads_only = server_factory(originals=originals)
    read_only(originals)
    r = put(uploads, "cam/photo", corpus(PHOTO).read_bytes(), "?render=none")
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.json() == {"error": "unavailable", "detail": "the originals folder is unwritable; try again",
                        "reason": "unwritable"}
    assert files(originals) == []
    ready = uploads.get("/readyz")
    assert ready.status_code == 503 and "cannot be written" in ready.json()["problems"]["originals"]
    assert reads_only.get("/readyz").status_code == 200  # without uploads, a read-only store is fine


def test_uploads_wait_in_the_spool_its_folder_and_its_budget(
        server_factory: Callable[..., Server], tmpfs: Callable[..., Path]) -> None:
    photo = corpus(PHOTO).read_bytes()
    spool = tmpfs("spool", "1m")
    fill(spool)
    server = server_factory(env={**TOKENS, "IMGPROXY_SPOOL_DIR": str(spool)})
    assert f"spool folder {spool} holds 1 MiB, less than" in server.logs()  # said at start-up
    r = put(server, "full", photo, "?render=none")
    assert r.status_code == 507 and r.json()["detail"] == "the spool folder is full", r.text
    assert files(spool) == [".filler"] and not stored(server)
    assert server.metric('imgproxy_disk_errors_total{folder="spool",reason="full"}') == 1
    # The byte budget: one upload announcing 1 MiB holds all of it while its body trickles in.
    limits = {"IMGPROXY_MAX_SOURCE_BYTES": str(1 << 20), "IMGPROXY_ORIGINALS_BUDGET_MB": "1"}
    server = server_factory(env={**TOKENS, **limits})
    sock = _raw_put(server, "slow", {"Content-Length": str(1 << 20)})
    sock.sendall(photo[:1000])
    time.sleep(0.5)
    r = put(server, "p", photo, "?render=none")
    assert r.status_code == 503 and r.json()["limit"] == "originals_budget_mb", r.text
    sock.close()
    time.sleep(0.5)
    assert put(server, "p", photo, "?render=none").status_code == 201
