"""URL parsing, and hostile URLs against a running server (hypothesis): only 400, 403 or 404.

Requests go out on raw sockets so the request target reaches the server byte
for byte (an HTTP client would normalise ``..`` and escapes away).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KEY, Server, add_original, corpus, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgproxy.errors import BadRequest, Forbidden
from imgproxy.signing import sign
from imgproxy.urls import MAX_ID_LENGTH, check_id, parse_path, signature_from_query, variant_url


def test_parse_path():
    r = parse_path("thumbnail/gallery/42/photo.webp")
    assert (r.preset, r.id, r.fmt) == ("thumbnail", "gallery/42/photo", "webp")
    assert r.canonical == "thumbnail/gallery/42/photo.webp"
    assert r.content_type == "image/webp"


def test_dots_inside_ids_are_fine():
    assert parse_path("web/a.b/c..d/IMG_1.final.jpg").id == "a.b/c..d/IMG_1.final"


@pytest.mark.parametrize("path", [
    "thumbnail", "thumbnail/", "thumbnail/photo", "thumbnail/photo.bmp", "thumbnail/photo.WEBP",
    "thumbnail/../etc/passwd.webp", "thumbnail/a/../../b.webp", "thumbnail/./a.webp",
    "thumbnail//a.webp", "thumbnail/a//b.webp", "thumbnail//etc/passwd.webp",
    "thumbnail/%2e%2e/a.webp", "thumbnail/a%2Fb.webp", "thumbnail/a b.webp", "thumbnail/ü.webp",
    "thumbnail/a\x00.webp", "Thumbnail/a.webp", "thumbnail/.webp", "thumbnail/a/.webp",
    "thumbnail/" + "a" * (MAX_ID_LENGTH + 1) + ".webp",
])
def test_bad_paths(path):
    with pytest.raises(BadRequest):
        parse_path(path)


def test_id_length_limit():
    assert check_id("a" * MAX_ID_LENGTH)


@pytest.mark.parametrize("query,error", [
    (b"", Forbidden), (b"s=", Forbidden), (b"s", BadRequest), (b"x=1", BadRequest),
    (b"s=abc&s=def", BadRequest), (b"s=abc&w=100", BadRequest), (b"w=100&s=abc", BadRequest),
    (b"s=abc;x=1", BadRequest), (b"S=abc", BadRequest),
])
def test_query_must_be_exactly_one_signature(query, error):
    with pytest.raises(error):
        signature_from_query(query)


def test_signature_from_query():
    assert signature_from_query(b"s=abc-_DEF") == "abc-_DEF"


def test_variant_url_refuses_bad_ids():
    with pytest.raises(BadRequest):
        variant_url("k", "thumbnail", "../x", "webp")
    with pytest.raises(BadRequest):
        variant_url("k", "thumbnail", "x", "bmp")
    assert variant_url("k", "web", "a/b", "jpg", "https://img.example.com/").startswith(
        "https://img.example.com/v/web/a/b.jpg?s="
    )


ALLOWED = {400, 403, 404}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRAVERSAL = [
    "..", ".", "../secret", "..%2fsecret", "%2e%2e/secret", "%2e%2e%2fsecret", "..%5csecret",
    "..\\secret", "....//secret", "%252e%252e%252fsecret", "photo%00.jpg", "photo\x00", "/etc/passwd",
    "//etc/passwd", "a/../../secret", "a/./b", "a//b", "%2F", "~root", "photo.jpg%20", "ph oto",
    "\u2025/secret", "\uff0e\uff0e/secret", "caf\u00e9", "\U0001f600", "a" * 600, "a/" * 300,
]
ids = st.one_of(
    st.sampled_from(TRAVERSAL),
    st.text(alphabet=st.sampled_from(list("./%\\~:;?#&=+@ \x00\t\n\u00e9\u2025\uff0e\U0001f600aZ09_-")),
            min_size=1, max_size=40),
    st.lists(st.sampled_from(["..", ".", "", "%2e%2e", "%2f", "secret", "a"]), min_size=1, max_size=8)
    .map("/".join),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=3000),
)
presets = st.sampled_from(["thumbnail", "THUMBNAIL", "../thumbnail", "nope", "", "thumbnail%2f.."])
formats = st.sampled_from(["webp", "png", "jpg", "avif", "gif", "svg", "WEBP", "", "webp%00"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    secret = corpus("webp/" + sorted(p.name for p in corpus("webp").iterdir())[0])
    (tmp / "secret.webp").write_bytes(secret.read_bytes())  # outside originals: never served
    server = start_server(tmp, env={"IMGPROXY_LOG_LEVEL": "warning"})
    add_original(server, secret, "photo")
    yield server
    server.stop()


def status(server: Server, target: bytes) -> int:
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def target(path: str, query: str) -> bytes:
    raw = path.encode("utf-8", "surrogateescape")
    # A request line cannot hold CR, LF or spaces; send them escaped as a client would.
    for byte, escaped in ((b"\r", b"%0D"), (b"\n", b"%0A"), (b" ", b"%20")):
        raw = raw.replace(byte, escaped)
    return raw + (b"?" + query.encode() if query else b"")


@FUZZ
@given(preset=presets, id=ids, fmt=formats)
def test_unsigned_hostile_paths(server: Server, preset: str, id: str, fmt: str) -> None:
    path = f"/v/{preset}/{id}.{fmt}"
    assert status(server, target(path, "s=" + "A" * 43)) in ALLOWED
    assert status(server, target(path, "")) in ALLOWED


@FUZZ
@given(preset=presets, id=ids, fmt=formats)
def test_signed_hostile_paths_never_escape(server: Server, preset: str, id: str, fmt: str) -> None:
    """Even a correctly signed bad id (a buggy backend signing user input) stays inside."""
    signed = f"{preset}/{id}.{fmt}"
    code = status(server, target(f"/v/{signed}", "s=" + sign(KEY, signed)))
    assert code in ALLOWED
    try:
        request = parse_path(signed)
    except Exception:
        return
    if request.id != "photo":
        assert code != 200


@FUZZ
@given(query=st.one_of(
    st.sampled_from(["s={sig}&s={sig}", "s={sig}&x=1", "x=1&s={sig}", "s={sig};x=1", "S={sig}", "s",
                     "s=", "=&s={sig}", "s={sig}&", "s={sig}%26s={sig}", "s[]={sig}", "s={sig}#x"]),
    st.text(alphabet=st.sampled_from(list("s={sig}&;%x1 ")), max_size=30),
))
def test_query_strings_other_than_one_s(server: Server, query: str) -> None:
    sig = sign(KEY, "thumbnail/photo.webp")
    if query.replace("{sig}", sig) == f"s={sig}":
        return
    raw = query.replace("{sig}", sig).replace(" ", "%20").replace("#", "%23")
    # 308: one valid s among other parameters, redirected to the one URL (tests/test_canonical.py).
    assert status(server, b"/v/thumbnail/photo.webp?" + raw.encode()) in {*ALLOWED, 308}


def test_the_real_one_still_works(server: Server) -> None:
    assert server.get(server.url("thumbnail", "photo", "webp")).status_code == 200
    assert status(server, target("/v/thumbnail/../secret.webp", "s=" + sign(KEY, "thumbnail/../secret.webp"))) == 400


@given(id=ids)
@settings(max_examples=300, deadline=None)
def test_check_id_accepts_only_plain_segments(id: str) -> None:
    try:
        check_id(id)
    except Exception:
        return
    assert all(segment not in ("", ".", "..") for segment in id.split("/"))
    assert all(c.isascii() and (c.isalnum() or c in "._-/") for c in id)
    assert (Path("/srv/originals") / id).resolve().is_relative_to("/srv/originals")
