"""GET /o/<id>: expiring, signed downloads of the untouched original, streamed, with ranges."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from imgproxy.urls import original_url
from imgproxy.web.originals import RangeNotSatisfiable, byte_range, content_disposition, download_name, sniff
from tests.conftest import KEY, ROOT, Moto, Server, add_original, corpus, put_original

VECTORS = json.loads((Path(__file__).parent / "vectors" / "meta_and_originals.json").read_text())
PHOTO = "exif/mei__Apple_iPhone_4.jpg"


def test_which_stores_can_be_downloaded_copied_and_written_is_a_runtime_checked_protocol() -> None:
    from imgproxy.stores import Downloads, OriginalFiles
    from imgproxy.stores.http import HttpOriginals
    from imgproxy.stores.local import LocalOriginals
    from imgproxy.stores.s3 import S3Originals

    assert all(issubclass(store, Downloads) for store in (LocalOriginals, S3Originals, HttpOriginals))
    assert issubclass(LocalOriginals, OriginalFiles) and issubclass(S3Originals, OriginalFiles)
    assert not issubclass(HttpOriginals, OriginalFiles)  # GET /o/ streams from it; copy and PUT refuse it


def _link(server: Server, id: str, seconds: int = 3600, inline: bool = False) -> str:
    return original_url(KEY, id, int(time.time()) + seconds, inline, server.base_url)


@pytest.mark.parametrize("v", VECTORS["original"], ids=lambda v: v["canonical"])
def test_original_vectors(v: dict[str, object]) -> None:
    assert original_url(str(v["key"]), str(v["id"]), int(str(v["expires"])), bool(v["inline"])) == v["url"]
    digest = hmac.new(str(v["key"]).encode(), str(v["canonical"]).encode(), hashlib.sha256).digest()
    assert str(v["url"]).endswith("&s=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def test_content_disposition() -> None:
    assert content_disposition("photo.jpg") == 'attachment; filename="photo.jpg"'
    assert content_disposition("photo.jpg", inline=True) == 'inline; filename="photo.jpg"'
    header = content_disposition('Über "straße".jpg')
    assert header == ("attachment; filename=\"ber__stra_e_.jpg\"; "
                      "filename*=UTF-8''%C3%9Cber%20%22stra%C3%9Fe%22.jpg")
    assert content_disposition("\r\n") == 'attachment; filename="download"; filename*=UTF-8\'\'%0D%0A'


def test_byte_range() -> None:
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=-10", 100) == (90, 99)
    assert byte_range("bytes=-1000", 100) == (0, 99)
    assert byte_range("bytes=50-5000", 100) == (50, 99)
    assert byte_range("bytes=0-1,5-6", 100) is None  # several: the whole body
    assert byte_range("items=0-1", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=100-", 100)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=-0", 100)


def test_download_name_carries_an_extension() -> None:
    assert download_name("cams/htc", "image/jpeg") == "htc.jpg"  # an upload, stored as <id>
    assert download_name("cams/htc.v0123456789ab", "image/jpeg") == "htc.v0123456789ab.jpg"  # replaced
    assert download_name("cams/photo.JPG", "image/jpeg") == "photo.JPG"  # the key's own extension
    assert download_name("cams/photo.png", "image/jpeg") == "photo.png"
    assert download_name("logo", "application/octet-stream") == "logo"  # SVG and unknown: no guess
    assert download_name("x/.jpg", "image/png") == ".jpg.png"


def test_sniff() -> None:
    assert sniff(corpus(PHOTO).read_bytes()[:32]) == "image/jpeg"
    assert sniff(corpus("heic/exifsamples__IMG_5195.HEIC").read_bytes()[:32]) == "image/heic"
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>") == "application/octet-stream"


def test_download_from_local_disk(server: Server) -> None:
    add_original(server.originals, corpus(PHOTO), "cams/iphone")
    body = corpus(PHOTO).read_bytes()
    url = _link(server, "cams/iphone", 600)
    r = server.get(url)
    assert r.status_code == 200 and r.content == body
    h = r.headers
    assert h["content-type"] == "image/jpeg" and h["content-length"] == str(len(body))
    assert h["content-disposition"] == 'attachment; filename="iphone.jpg"'
    assert h["accept-ranges"] == "bytes" and h["etag"].startswith('"')
    assert h["cache-control"].startswith("private, max-age=")
    assert 590 <= int(h["cache-control"].rsplit("=", 1)[1]) <= 600

    part = server.get(url, headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert part.headers["content-type"] == "image/jpeg"
    tail = server.get(url, headers={"range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == body[-10:]
    bad = server.get(url, headers={"range": f"bytes={len(body)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(body)}"
    stale_if_range = server.get(url, headers={"range": "bytes=0-0", "if-range": '"other"'})
    assert stale_if_range.status_code == 200 and stale_if_range.content == body
    assert server.get(url, headers={"if-none-match": h["etag"]}).status_code == 304
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(body))
    inline = server.get(_link(server, "cams/iphone", inline=True))
    assert inline.headers["content-disposition"] == 'inline; filename="iphone.jpg"'


def test_an_upload_stored_without_extension_downloads_with_one(server: Server) -> None:
    """curl -OJ saves htc.jpg, as the README promises, though the key is cams/htc."""
    (server.originals / "cams").mkdir(parents=True, exist_ok=True)
    (server.originals / "cams" / "htc").write_bytes(corpus(PHOTO).read_bytes())
    for r in (server.get(_link(server, "cams/htc", 600)), httpx.head(_link(server, "cams/htc", 600)),
              server.get(_link(server, "cams/htc", 600), headers={"range": "bytes=10-19"})):
        assert r.status_code in (200, 206) and r.headers["content-disposition"] == 'attachment; filename="htc.jpg"'


def test_bad_links_are_403(server: Server) -> None:
    add_original(server.originals, corpus(PHOTO), "cams/iphone")
    add_original(server.originals, corpus(PHOTO), "cams/other")
    expired = original_url(KEY, "cams/iphone", int(time.time()) - 1, base_url=server.base_url)
    assert server.get(expired).status_code == 403
    good = _link(server, "cams/iphone")
    assert server.get(good.replace("cams/iphone", "cams/other")).status_code == 403  # another id
    e = good.split("e=")[1].split("&")[0]
    assert server.get(good.replace(f"e={e}", f"e={int(e) + 3600}")).status_code == 403  # a later expiry
    assert server.get(good.replace("?e=", "?d=inline&e=")).status_code == 400
    assert server.get(good.replace("&s=", "&d=inline&s=")).status_code == 403  # inline is signed too
    assert server.get(good.rsplit("&s=", 1)[0]).status_code == 403
    forged = original_url("not-the-key", "cams/iphone", int(time.time()) + 60, base_url=server.base_url)
    assert server.get(forged).status_code == 403
    assert server.get(_link(server, "cams/missing")).status_code == 404
    assert httpx.post(good).status_code != 200


def test_download_from_s3(server_factory: Callable[..., Server], moto: Moto, bucket: str) -> None:
    put_original(moto, bucket, "o/cams/iphone.jpg", corpus(PHOTO))
    server = server_factory(originals=f"s3://{bucket}/o", env=moto.env())
    body = corpus(PHOTO).read_bytes()
    url = _link(server, "cams/iphone")
    r = server.get(url)
    assert r.status_code == 200 and r.content == body and r.headers["content-type"] == "image/jpeg"
    assert r.headers["content-disposition"] == 'attachment; filename="iphone.jpg"'
    part = server.get(url, headers={"range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == body[1000:2000]
    assert part.headers["content-type"] == "image/jpeg"  # sniffed from the head, not the range


def test_cli_sign_original(server: Server) -> None:
    add_original(server.originals, corpus(PHOTO), "cams/iphone")
    out = subprocess.run([sys.executable, "-m", "imgproxy", "sign", "--original", "cams/iphone", "--expires", "120",
                          "--base-url", server.base_url], env=server.env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    r = server.get(out.stdout.strip())
    assert r.status_code == 200 and int(r.headers["cache-control"].rsplit("=", 1)[1]) <= 120


@pytest.mark.slow
def test_a_100_mb_download_streams_with_bounded_memory(server: Server) -> None:
    big = server.originals / "big" / "blob.jpg"
    big.parent.mkdir(parents=True)
    with big.open("wb") as f:  # a JPEG's magic, then 100 MB of noise
        f.write(b"\xff\xd8\xff\xe0")
        for _ in range(100):
            f.write(hashlib.sha256(f.tell().to_bytes(8, "big")).digest() * 32768)
    size = big.stat().st_size
    proc = psutil.Process(server.proc.pid)
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    digest = hashlib.sha256()
    received = 0
    try:
        with httpx.stream("GET", _link(server, "big/blob"), timeout=120) as r:
            assert r.status_code == 200 and r.headers["content-length"] == str(size)
            for chunk in r.iter_bytes():
                digest.update(chunk)
                received += len(chunk)
                time.sleep(0.0005 if received < 5 << 20 else 0)  # a slow start: backpressure must hold
    finally:
        done.set()
        sampler.join()
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    growth = (peak - baseline) / 2**20
    print(f"100 MB download: server RSS {baseline / 2**20:.1f} MiB -> peak {peak / 2**20:.1f} MiB (+{growth:.1f})")
    assert growth < 32, f"server RSS grew {growth:.1f} MiB for a {size >> 20} MiB download"


def test_download_from_an_http_origin(server_factory: Callable[..., Server], origin: str) -> None:
    """The origin ignores Range: the server skips to the range and stops after it."""
    from tests.conftest import ORIGIN_PHOTO

    server = server_factory(originals=f"{origin}/img/", env={"IMGPROXY_HTTP_ALLOW_PRIVATE": "1"})
    body = corpus(ORIGIN_PHOTO).read_bytes()
    url = _link(server, "photo", 600)
    r = server.get(url)
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-type"] == "image/jpeg" and r.headers["content-length"] == str(len(body))
    assert r.headers["content-disposition"] == 'attachment; filename="photo.jpg"'
    part = server.get(url, headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    assert server.get(url, headers={"if-none-match": r.headers["etag"]}).status_code == 304
    assert server.get(_link(server, "missing", 600)).status_code == 404


def test_http_origin_dates_and_ranges_are_checked(server_factory: Callable[..., Server], origin: str) -> None:
    """A Last-Modified that is not a date is left out; a 206 is served only as
    the range it says it is, and only when that covers the range asked for."""
    from tests.conftest import ORIGIN_PHOTO

    server = server_factory(originals=f"{origin}/img/", env={"IMGPROXY_HTTP_ALLOW_PRIVATE": "1"})
    body = corpus(ORIGIN_PHOTO).read_bytes()
    r = server.get(_link(server, "bad-date", 600))
    assert r.status_code == 200 and r.content == body and "last-modified" not in r.headers
    wider = server.get(_link(server, "range-wider", 600), headers={"range": "bytes=100-199"})
    assert wider.status_code == 206 and wider.content == body[100:200]
    assert wider.headers["content-range"] == f"bytes 100-199/{len(body)}"
    for id in ("range-other", "range-unlabelled"):
        r = server.get(_link(server, id, 600), headers={"range": "bytes=100-199"})
        assert r.status_code == 502 and r.json()["error"] == "bad_gateway", (id, r.headers, r.content[:100])
        assert server.get(_link(server, id, 600)).content == body  # no Range: the whole body
