import pytest

from imgproxy.errors import BadRequest, Forbidden
from imgproxy.urls import MAX_ID_LENGTH, check_id, parse_path, signature_from_query, variant_url


def test_parse_path():
    r = parse_path("thumbnail/gallery/42/photo.webp")
    assert (r.preset, r.id, r.fmt) == ("thumbnail", "gallery/42/photo", "webp")
    assert r.canonical == "thumbnail/gallery/42/photo.webp"
    assert r.content_type == "image/webp"


def test_dots_inside_ids_are_fine():
    assert parse_path("web/a.b/c..d/IMG_1.final.jpg").id == "a.b/c..d/IMG_1.final"


@pytest.mark.parametrize("path", [
    "thumbnail", "thumbnail/", "thumbnail/photo", "thumbnail/photo.gif", "thumbnail/photo.WEBP",
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
        variant_url("k", "thumbnail", "x", "gif")
    assert variant_url("k", "web", "a/b", "jpg", "https://img.example.com/").startswith(
        "https://img.example.com/v/web/a/b.jpg?s="
    )
