"""Which keys of the originals store are imgproxy's own writes (stores sharing a bucket or folder)."""

from __future__ import annotations

import pytest

from imgproxy.stores.keyspace import key_space

VARIANT = "thumbnail/0123456789ab/gallery/p.webp"


@pytest.mark.parametrize(("originals", "variants", "key", "own"), [
    # Variants nested in the originals: everything under them.
    ("s3://loop", "s3://loop/variants", "variants/anything/at/all.jpg", True),
    ("s3://loop", "s3://loop/variants", "variants/.leases/" + VARIANT, True),
    ("s3://loop", "s3://loop/variants", "variants/_meta/v1/p.json", True),
    ("s3://loop", "s3://loop/variants", "variants2/p.jpg", False),
    ("s3://loop/up", "s3://loop/up/v", "v/" + VARIANT, True),
    ("file:///srv/o", "file:///srv/o/variants/", "variants/" + VARIANT, True),
    # One shared root: only what has a variant key's shape.
    ("s3://loop", "s3://loop", VARIANT, True),
    ("s3://loop", "s3://loop", "thumbnail@w640/0123456789ab/p.webp", False),
    ("s3://loop", "s3://loop", "web/0123456789ab@w640/p.webp", True),
    ("s3://loop", "s3://loop", "_meta/v1-gps/p.json", True),
    ("s3://loop", "s3://loop", "gallery/p.jpg", False),
    # The originals inside the variant store's root.
    ("s3://b/v/orig", "s3://b/v", "p.jpg", False),
    # Elsewhere: only dot-segments (leases, locks, temp and side files).
    ("s3://a", "s3://b", VARIANT, False),
    ("s3://a/up", "s3://a/upload", "p.jpg", False),
    ("file:///srv/o", "file:///srv/v", "g/.tmp-0123abcd", True),
    ("file:///srv/o", "file:///srv/v", "g/.p.jpg.sha256", True),
    ("https://cdn.example/img/", "s3://b", "g/p.jpg", False),
])
def test_own_keys(originals: str, variants: str, key: str, own: bool) -> None:
    assert key_space(originals, variants).own(key) is own


def test_key_of_an_s3_event() -> None:
    space = key_space("s3://photos/uploads", "s3://photos/variants")
    assert space.key_of("s3://photos/uploads/a/b.jpg") == "a/b.jpg"
    assert space.key_of("s3://photos/uploads-old/a.jpg") is None
    assert space.key_of("s3://other/uploads/a.jpg") is None
    assert key_space("file:///srv/o", "file:///srv/v").key_of("s3://srv/o/a.jpg") is None
