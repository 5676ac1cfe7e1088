"""GET /meta/<id>.json: the metadata document from real camera files, signed, made once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imgproxy.render import Limits, MetaJob, Probed, Source, configure, run_job
from imgproxy.render.exif import MAX_STRING, read_exif
from imgproxy.render.thumbhash import encode as thumbhash_encode
from imgproxy.urls import meta_url
from imgproxy.variants.service import meta_key
from tests.conftest import KEY, ROOT, Server, add_original, corpus

VECTORS = json.loads((Path(__file__).parent / "vectors" / "meta_and_originals.json").read_text())
IPHONE4 = "exif/mei__Apple_iPhone_4.jpg"
CANON = "exif/exifsamples__Canon_40D.jpg"
ROTATED = "exif/exifsamples__canon_hdr_YES.jpg"  # 2048x1536, orientation 6
HEIC = "heic/exifsamples__IMG_5195.HEIC"


def _exif(relative: str, gps: bool = False) -> dict[str, object]:
    import pyvips

    image = pyvips.Image.new_from_file(str(corpus(relative)), access="sequential")
    return read_exif(image.get("exif-data"), gps=gps)


def _doc(relative: str, gps: bool = False) -> dict[str, object]:
    configure()
    result = run_job(MetaJob(Source(path=str(corpus(relative))), Limits(), gps))
    assert isinstance(result, Probed)
    return result.info


@pytest.mark.parametrize("v", VECTORS["meta"], ids=lambda v: v["id"])
def test_meta_vectors(v: dict[str, str]) -> None:
    assert meta_url(v["key"], v["id"]) == v["url"]
    digest = hmac.new(v["key"].encode(), f"meta/{v['id']}".encode(), hashlib.sha256).digest()
    assert v["url"].endswith("?s=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def test_meta_key_cannot_meet_a_variant_key() -> None:
    assert meta_key("a/b", False) == "_meta/v1/a/b.json"
    assert meta_key("a/b", True) == "_meta/v1-gps/a/b.json"


@pytest.mark.parametrize(("relative", "expected"), [
    (CANON, {"make": "Canon", "model": "Canon EOS 40D", "date_taken": "2008-05-30T15:56:01.00",
             "exposure_time": "1/160", "f_number": 7.1, "iso": 100, "focal_length": 135.0, "software": "GIMP 2.4.5"}),
    (IPHONE4, {"make": "Apple", "model": "iPhone 4", "date_taken": "2011-01-13T14:33:39",
               "exposure_time": "1/15", "f_number": 2.8, "iso": 500, "software": "4.1"}),
    ("exif/exifsamples__nikon-e950.jpg", {"make": "NIKON", "model": "E950", "iso": 80, "f_number": 5.5}),
    ("exif/bimg__test_exif_full.jpg", {"make": "Apple", "model": "iPhone XS", "f_number": 1.8, "iso": 25,
                                       "date_taken": "2020-07-28T19:18:49.777+03:00",
                                       "lens": "Apple iPhone XS back dual camera 4.25mm f/1.8"}),
    (HEIC, {"make": "Apple", "model": "iPhone 11 Pro Max", "date_taken": "2021-04-11T15:47:53.054-05:00",
            "exposure_time": "1/391", "iso": 32, "focal_length": 4.25, "software": "14.4.2"}),
])
def test_exif_of_real_camera_files(relative: str, expected: dict[str, object]) -> None:
    exif = _exif(relative)
    assert {k: exif.get(k) for k in expected} == expected
    assert "gps" not in exif


def test_gps_only_when_asked() -> None:
    gps = _exif("exif/mei__Sony_DSC-HX5V_2.jpg", gps=True)["gps"]
    assert gps == {"latitude": pytest.approx(51.778615), "longitude": pytest.approx(8.3656381),
                   "altitude": pytest.approx(93.3)}
    assert _exif(HEIC, gps=True)["gps"]["longitude"] == pytest.approx(-94.2887722)  # type: ignore[index]


def test_malformed_exif_never_raises() -> None:
    good = bytes(_exif_blob(CANON))
    assert read_exif(good)["model"] == "Canon EOS 40D"
    for blob in (b"", b"Exif\0\0", b"Exif\0\0II*\0\xff\xff\xff\xff", b"MM\0*\0\0\0\x08\xff\xff" + b"\0" * 20):
        assert read_exif(blob) == {}
    for cut in range(0, len(good), 97):  # every truncation: fields drop out, nothing raises
        read_exif(good[:cut], gps=True)
    # Invalid UTF-8, control characters and an over-long Make: cleaned and bounded.
    evil = _tiff_with_make(b"Can\xffon\x07" + b"x" * 5000)
    make = read_exif(evil)["make"]
    assert isinstance(make, str) and len(make) <= MAX_STRING and "\x07" not in make


def _exif_blob(relative: str) -> bytes:
    import pyvips

    return bytes(pyvips.Image.new_from_file(str(corpus(relative))).get("exif-data"))


def _tiff_with_make(value: bytes) -> bytes:
    """Little-endian TIFF: IFD0 with one Make entry whose value follows the IFD."""
    import struct

    value += b"\0"
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, len(value), 8 + 2 + 12 + 4) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 8) + ifd + value


def test_our_thumbhash_matches_the_package_and_handles_alpha() -> None:
    thumbhash = pytest.importorskip("thumbhash")
    rgba = [v for i in range(24 * 16) for v in (i % 256, (i * 7) % 256, (i * 13) % 256, 255)]
    assert thumbhash_encode(24, 16, rgba) == bytes(thumbhash.rgba_to_thumb_hash(24, 16, rgba))
    transparent = [v for i in range(8 * 8) for v in (200, 10, 10, 0 if i % 3 else 255)]
    assert thumbhash_encode(8, 8, transparent)[2] & 0x80  # has_alpha bit set, no TypeError


def test_document_of_a_rotated_jpeg_and_a_heic() -> None:
    doc = _doc(ROTATED)
    assert (doc["width"], doc["height"], doc["orientation"]) == (1536, 2048, 6)
    assert doc["format"] == "jpeg" and doc["frames"] == 1 and doc["alpha"] is False
    heic = _doc(HEIC)
    assert heic["format"] == "heic" and heic["icc_profile"] == "Display P3"
    assert (heic["width"], heic["height"]) == (2566, 3313)
    placeholder = heic["placeholder"]
    assert isinstance(placeholder, dict)
    assert placeholder["lqip"].startswith("data:image/webp;base64,")
    assert len(placeholder["blurhash"]) == 28 and placeholder["dominant_color"].startswith("#")


def test_meta_endpoint(server: Server) -> None:
    add_original(server.originals, corpus(IPHONE4), "cams/iphone4")
    url = meta_url(KEY, "cams/iphone4", server.base_url)
    r = server.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert "immutable" in r.headers["cache-control"] and r.headers["x-imgproxy-tier"] == "render"
    doc = r.json()
    assert doc["id"] == "cams/iphone4"
    assert (doc["width"], doc["height"], doc["format"], doc["bytes"]) == (1296, 968, "jpeg", 338025)
    assert doc["icc_profile"] == "sRGB IEC61966-2.1" and doc["color_space"] == "srgb"
    assert doc["exif"]["model"] == "iPhone 4" and doc["exif"]["exposure_time"] == "1/15"
    assert "gps" not in doc and "gps" not in doc["exif"]  # off by default: location is personal data
    assert set(doc["placeholder"]) == {"blurhash", "thumbhash", "lqip", "dominant_color"}
    stored = server.variants / "_meta" / "v1" / "cams" / "iphone4.json"
    assert json.loads(stored.read_bytes()) == doc
    again = server.get(url)
    assert again.headers["x-imgproxy-tier"] == "memory" and again.content == r.content
    assert server.get(url, headers={"if-none-match": r.headers["etag"]}).status_code == 304
    assert server.get(url.replace("s=", "s=x")).status_code == 403
    assert server.get(meta_url(KEY, "cams/other", server.base_url)).status_code == 404
    forged = meta_url(KEY, "cams/iphone4", server.base_url).replace("iphone4.json", "iphone4x.json")
    assert server.get(forged).status_code == 403
    assert server.get(url.replace(".json", ".xml")).status_code == 400


def test_meta_gps_with_the_setting(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={"IMGPROXY_META_GPS": "true"})
    add_original(server.originals, corpus(HEIC), "cams/heic")
    doc = server.get(meta_url(KEY, "cams/heic", server.base_url)).json()
    assert doc["format"] == "heic" and doc["exif"]["model"] == "iPhone 11 Pro Max"
    assert doc["gps"]["latitude"] == pytest.approx(39.0513444)
    assert (server.variants / "_meta" / "v1-gps" / "cams" / "heic.json").exists()


def test_cli_sign_meta_and_info(server: Server) -> None:
    add_original(server.originals, corpus(CANON), "cams/canon")
    env = {**server.env}
    out = subprocess.run([sys.executable, "-m", "imgproxy", "sign", "--meta", "cams/canon", "--base-url",
                          server.base_url], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    url = out.stdout.strip()
    assert url == meta_url(KEY, "cams/canon", server.base_url)
    served = server.get(url).json()
    info = subprocess.run([sys.executable, "-m", "imgproxy", "info", "cams/canon"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert json.loads(info.stdout) == served
    assert served["exif"]["model"] == "Canon EOS 40D"
    assert os.path.exists(server.variants / "_meta" / "v1" / "cams" / "canon.json")
