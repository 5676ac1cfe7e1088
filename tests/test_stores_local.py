import asyncio
import errno
import os
import stat

import pytest
from conftest import add_original, corpus, read_only

from imgproxy.errors import BadRequest, NotFound, TooLarge
from imgproxy.stores import Blob, file_path
from imgproxy.stores.local import LocalOriginals, LocalVariants


def test_file_urls():
    assert file_path("file:///srv/img") == "/srv/img"
    assert file_path("file://./data/originals") == "./data/originals"


@pytest.fixture
def originals(tmp_path):
    root = tmp_path / "originals"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "42.jpg").write_bytes(b"jpeg")
    (root / "photos" / "IMG.HEIC").write_bytes(b"heic")
    (root / "plain").write_bytes(b"no extension")
    (root / "big.png").write_bytes(b"x" * 100)
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    (root / "link").symlink_to(tmp_path / "secret.jpg")
    return LocalOriginals(str(root), max_bytes=50)


async def test_resolves_the_extension(originals):
    found = await originals.fetch("photos/42")
    assert found.key == "photos/42.jpg"
    assert found.source.path.endswith("photos/42.jpg")
    assert (await originals.fetch("photos/IMG")).key == "photos/IMG.HEIC"
    assert (await originals.fetch("plain")).key == "plain"


async def test_identity_changes_with_the_file(originals):
    before = (await originals.fetch("photos/42")).identity
    path = originals.root / "photos" / "42.jpg"
    path.write_bytes(b"changed jpeg")
    assert (await originals.fetch("photos/42")).identity != before


@pytest.mark.parametrize("id", ["missing", "photos", "photos/42.jpg/x", "link", "../secret", "/etc/passwd"])
async def test_missing_or_outside_is_404(originals, id):
    with pytest.raises(NotFound):
        await originals.fetch(id)


async def test_size_cap(originals):
    with pytest.raises(TooLarge) as info:
        await originals.fetch("big")
    assert info.value.extra["limit"] == "max_source_bytes"


def variant(body=b"body") -> Blob:
    return Blob.of(body, 0)


async def test_put_is_atomic_and_never_overwrites(tmp_path):
    store = LocalVariants(str(tmp_path / "v"))
    assert await store.get("p/d/a.webp") is None
    assert await store.put("p/d/a.webp", variant(b"first"), {})
    assert not await store.put("p/d/a.webp", variant(b"second"), {})
    got = await store.get("p/d/a.webp")
    assert got.body == b"first" and got.etag.startswith('"')
    leftovers = [p for p in (tmp_path / "v" / "p" / "d").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


async def test_a_hit_reuses_the_etag_until_the_variant_is_purged_or_replaced(tmp_path):
    store = LocalVariants(str(tmp_path / "v"))
    await store.put("p/d/a.webp", variant(b"first"), {})
    os.utime(tmp_path / "v" / "p" / "d" / "a.webp", (1e9, 1e9))  # rendered long ago
    first = await store.get("p/d/a.webp")
    again = await store.get("p/d/a.webp")
    assert again.body == b"first" and again.etag == first.etag == variant(b"first").etag
    assert again.mtime == first.mtime == (tmp_path / "v" / "p" / "d" / "a.webp").stat().st_mtime
    assert await store.delete("p/d/a.webp")
    assert await store.get("p/d/a.webp") is None  # purged: never served from what was remembered
    await store.put("p/d/a.webp", variant(b"other"), {})  # a new render after a purge: same size,
    # maybe the same inode, but not the same mtime (which is all three can tell apart)
    assert (await store.get("p/d/a.webp")).etag == variant(b"other").etag
    (tmp_path / "v" / "p" / "x.webp").mkdir()  # a folder where a variant would be
    assert await store.get("p/x.webp") is None


async def test_failed_write_leaves_nothing(tmp_path):
    store = LocalVariants(str(tmp_path / "v"))
    (tmp_path / "v" / "p").mkdir()
    (tmp_path / "v" / "p" / "d").write_bytes(b"a file where a folder should be")
    with pytest.raises(OSError):
        await store.put("p/d/a.webp", variant(), {})
    assert await store.get("p/d/a.webp") is None


async def test_lease_is_exclusive_and_sees_the_winner(tmp_path):
    one, two = LocalVariants(str(tmp_path / "v")), LocalVariants(str(tmp_path / "v"))
    order = []

    async def holder():
        async with one.lease("k.webp") as existing:
            assert existing is None
            order.append("held")
            await asyncio.sleep(0.2)
            await one.put("k.webp", variant(b"winner"), {})
            order.append("stored")

    async def waiter():
        await asyncio.sleep(0.05)
        async with two.lease("k.webp") as existing:
            order.append("waited")
            assert existing is not None and existing.body == b"winner"

    await asyncio.gather(holder(), waiter())
    assert order == ["held", "stored", "waited"]


async def test_lease_released_when_holder_exits_with_error(tmp_path):
    store = LocalVariants(str(tmp_path / "v"))
    with pytest.raises(RuntimeError):
        async with store.lease("k.webp"):
            raise RuntimeError
    async with asyncio.timeout(2):
        async with store.lease("k.webp") as existing:
            assert existing is None


# --- store faults, through a real server ---------------------------------------------------

STAR = "svg/linku__star.svg"


@pytest.fixture(params=["read-only", "out-of-inodes"])
def unwritable_variants(request, tmpfs):
    """A variant folder on a tmpfs where no file can be created (EROFS or ENOSPC)."""
    if request.param == "read-only":
        mount = tmpfs("store", "1m")
        (mount / "variants" / ".locks").mkdir(parents=True)
        read_only(mount)
        expected = errno.EROFS
    else:
        mount = tmpfs("store", "1m", "nr_inodes=16")
        (mount / "variants" / ".locks").mkdir(parents=True)
        with pytest.raises(OSError) as full:
            for i in range(100):
                (mount / f"filler-{i}").touch()
        assert full.value.errno == errno.ENOSPC
        expected = errno.ENOSPC
    with pytest.raises(OSError) as refused:
        os.open(mount / "variants" / ".locks" / "probe.lock", os.O_CREAT | os.O_RDWR, 0o644)
    assert refused.value.errno == expected
    return mount / "variants"


def test_an_unwritable_variant_store_serves_renders_and_counts_the_failures(
    server_factory, unwritable_variants
):
    server = server_factory(variants=unwritable_variants)
    id = add_original(server, corpus(STAR), "star")
    for fmt in ("webp", "png"):
        response = server.get(server.url("thumbnail", id, fmt))
        assert response.status_code == 200, response.text
        assert response.headers["x-imgproxy-tier"] == "render"
    assert "serving renders without storing them" in server.logs()
    # per miss: the lock, then the variant
    assert server.metric("imgproxy_store_errors_total") == 4


async def test_an_unwritable_store_records_why_it_is_degraded(unwritable_variants):
    store = LocalVariants(str(unwritable_variants))
    assert store.degraded is None
    async with store.lease("p/d/a.webp") as existing:
        assert existing is None
    assert store.degraded is not None and store.degraded.startswith("lease: ")
    with pytest.raises(OSError):
        await store.put("p/d/a.webp", variant(), {})
    assert store.degraded.startswith("put: ")


async def test_a_store_folder_that_cannot_be_created_degrades_instead_of_failing(unwritable_variants):
    store = LocalVariants(str(unwritable_variants / "not-yet"))
    assert store.degraded is not None
    async with store.lease("k.webp") as existing:
        assert existing is None


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
async def test_variant_files_honour_the_umask(tmp_path, umask):
    store = LocalVariants(str(tmp_path / "v"))
    old = os.umask(umask)
    try:
        assert await store.put("p/d/a.webp", variant(), {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "v" / "p" / "d" / "a.webp").stat().st_mode) == 0o666 & ~umask


def test_errors_of_the_ids_shape_are_400_and_404_not_503(server_factory):
    server = server_factory()
    id = add_original(server, corpus(STAR), "star")
    long = "a" * 300  # a file name is at most 255 bytes
    (server.originals / "loop").symlink_to("loop")
    (server.originals / "dir").mkdir()
    (server.originals / "dir" / "inner").symlink_to("../dir/inner")
    cases = [(long, 400), (f"dir/{long}", 400), (f"{long}/x", 400), ("loop", 404), ("dir/inner", 404),
             ("dir/inner/x", 404)]
    for bad, status in cases:
        response = server.get(server.url("thumbnail", bad))
        assert response.status_code == status, (bad, response.text)
        assert "retry-after" not in response.headers
    assert server.get(server.url("thumbnail", id)).status_code == 200


async def test_local_stores_map_the_ids_shape(tmp_path):
    originals = LocalOriginals(str(tmp_path), max_bytes=50)
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(BadRequest):
        await originals.fetch("a" * 300)
    with pytest.raises(NotFound):
        await originals.fetch("loop")
    store = LocalVariants(str(tmp_path / "v"))
    (tmp_path / "v" / "p").mkdir()
    with pytest.raises(BadRequest):
        await store.get("p/" + "a" * 300 + ".webp")
    (tmp_path / "v" / "p" / "loop.webp").symlink_to("loop.webp")
    with pytest.raises(NotFound):
        await store.get("p/loop.webp")


async def test_originals_list_their_keys_below_a_prefix(originals):
    (originals.root / "photos" / ".hidden.jpg").write_bytes(b"x")
    every = ["big.png", "link", "photos/42.jpg", "photos/IMG.HEIC", "plain"]
    assert sorted([k async for k in originals.list_keys()]) == every
    assert sorted([k async for k in originals.list_keys("photos/")]) == ["photos/42.jpg", "photos/IMG.HEIC"]
    assert [k async for k in originals.list_keys("pl")] == ["plain"]


async def test_variants_list_and_delete(tmp_path):
    store = LocalVariants(str(tmp_path / "v"))
    for key in ("p/d1/a.webp", "p/d1/b/c.avif", "q/d2/a.jpg"):
        assert await store.put(key, Blob.of(b"12345", 0), {})
    assert sorted([e async for e in store.list()]) == [("p/d1/a.webp", 5), ("p/d1/b/c.avif", 5), ("q/d2/a.jpg", 5)]
    assert [k async for k, _ in store.list("q/")] == ["q/d2/a.jpg"]
    assert await store.exists("p/d1/a.webp")
    assert await store.delete("p/d1/a.webp") and not await store.delete("p/d1/a.webp")
    assert not await store.exists("p/d1/a.webp")


async def test_an_id_with_several_keys_resolves_the_same_way_after_a_restart(tmp_path, caplog):
    root = tmp_path / "o"
    (root / "marks").mkdir(parents=True)
    # Written in opposite orders: the answer is the fixed order (exact, then jpg, JPG, jpeg, ..., png),
    # never which came first, so every process, and a restart resolving a watermark, agree.
    for name in ("logo.png", "logo.jpg", "icon.jpg", "icon.png", "both", "both.jpg"):
        (root / "marks" / name).write_bytes(name.encode())
    caplog.set_level("WARNING", logger="imgproxy.stores")
    for _ in range(3):  # three processes, or restarts
        store = LocalOriginals(str(root), max_bytes=1000)
        assert (await store.fetch("marks/logo")).key == "marks/logo.jpg"
        assert (await store.fetch("marks/icon")).key == "marks/icon.jpg"
        assert (await store.fetch("marks/both")).key == "marks/both"
        assert (await store.locate("marks/logo")).key == "marks/logo.jpg"
    warned = [r.getMessage() for r in caplog.records if "stored under" in r.getMessage()]
    assert len(warned) == 2 and "marks/logo.jpg, marks/logo.png" in warned[0], warned  # once per id


@pytest.mark.parametrize("key", ["plain/x", "photos", "photos/" + "n" * 248])
async def test_a_key_no_file_can_have_is_400_before_anything_is_written(originals, key):
    before = sorted(originals.root.rglob("*"))

    async def chunks():
        yield b"bytes"

    for exclusive in (True, False):  # uploads, and imgproxy copy
        with pytest.raises(BadRequest):
            await originals.write(key, chunks(), 5, sha256="0" * 64, exclusive=exclusive)
    assert sorted(originals.root.rglob("*")) == before
