"""S3 stores against moto in server mode (a separate process on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from conftest import Moto, Server, corpus, free_port, put_original

from imgproxy.config import ConfigError, Settings
from imgproxy.errors import ImgproxyError
from imgproxy.presets import load_presets
from imgproxy.stores import Blob
from imgproxy.stores.s3 import S3Originals, S3Variants, metadata_value, parse_url
from imgproxy.stores.s3errors import mapped
from imgproxy.stores.spool import Spool

PHOTO = "exif/mei__Apple_iPhone_4.jpg"


def test_parse_url() -> None:
    assert parse_url("s3://bucket") == ("bucket", "")
    assert parse_url("s3://bucket/") == ("bucket", "")
    assert parse_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_url("s3://bucket/a") == ("bucket", "a/")


def test_lease_must_outlast_download_and_render() -> None:
    with pytest.raises(ConfigError, match="IMGPROXY_S3_LEASE_SECONDS"):
        Settings(variants="s3://b/v", s3_lease_seconds=10, download_timeout=5, render_timeout=5)
    Settings(variants="s3://b/v", s3_lease_seconds=11, download_timeout=5, render_timeout=5)
    Settings(variants="file:///tmp/v", s3_lease_seconds=1)  # no lease on a local folder


def test_only_http_origins_list_several_prefixes() -> None:
    Settings(originals="https://a.example/x/,https://b.example/y/")
    with pytest.raises(ConfigError, match="IMGPROXY_ORIGINALS"):
        Settings(originals="s3://a/x,s3://b/y")
    with pytest.raises(ConfigError, match="bucket or host"):
        Settings(variants="s3:///prefix")


async def test_variant_put_never_overwrites(s3: object, bucket: str) -> None:
    store = S3Variants(s3, f"s3://{bucket}/v", 60)
    first = Blob.of(b"first", 0)
    assert await store.get("k.webp") is None
    assert await store.put("k.webp", first, {"preset-digest": "d", "source": "s"}) is True
    assert await store.put("k.webp", Blob.of(b"second", 0), {}) is False
    stored = await store.get("k.webp")
    assert stored is not None and stored.body == b"first"


async def test_original_resolution_prefers_the_exact_key(s3: object, bucket: str, moto: Moto) -> None:
    put_original(moto, bucket, "o/a/cat.PNG", corpus(PHOTO))
    put_original(moto, bucket, "o/a/dog", corpus(PHOTO))
    put_original(moto, bucket, "o/a/dog.jpg", corpus(PHOTO))
    store = S3Originals(s3, f"s3://{bucket}/o", 10_000_000, 5, Spool(1 << 30))
    assert (await store.fetch("a/cat")).key == "o/a/cat.PNG"
    assert (await store.fetch("a/dog")).key == "o/a/dog"
    with pytest.raises(Exception) as exc:
        await store.fetch("a/ca")
    assert getattr(exc.value, "status", None) == 404


def test_moto_honours_conditional_writes(moto: Moto, bucket: str) -> None:
    s3 = moto.client()
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch='"not-the-etag"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.put_object(Bucket=bucket, Key="k", Body=b"4", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"4"


def test_moto_concurrent_conditional_creates_have_one_winner(moto: Moto, bucket: str) -> None:
    """The lease relies on it: of many simultaneous If-None-Match PUTs, one wins."""
    clients = [moto.client() for _ in range(16)]
    for round in range(5):
        wins: list[int] = []
        barrier = threading.Barrier(len(clients))

        def put(i: int) -> None:
            barrier.wait()
            try:
                clients[i].put_object(Bucket=bucket, Key=f"race{round}", Body=str(i).encode(), IfNoneMatch="*")
                wins.append(i)
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] in (409, 412)

        threads = [threading.Thread(target=put, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(wins) == 1


@pytest.fixture
def s3_server(server_factory: Callable[..., Server], moto: Moto, bucket: str, tmp_path: Path) -> Callable[..., Server]:
    def start(**env: str) -> Server:
        return server_factory(
            originals=f"s3://{bucket}/originals", variants=f"s3://{bucket}/variants",
            env=moto.env(**env),
        )
    return start


def test_serves_from_s3_and_stores_variant_with_metadata(
    s3_server: Callable[..., Server], moto: Moto, bucket: str
) -> None:
    put_original(moto, bucket, "originals/gallery/cat.jpg", corpus(PHOTO))
    server = s3_server()
    first = server.get(server.url("thumbnail", "gallery/cat", "webp"))
    assert first.status_code == 200, first.text
    assert first.headers["x-imgproxy-tier"] == "render"
    preset = load_presets(server.env["IMGPROXY_PRESETS"])["thumbnail"]
    key = f"variants/thumbnail/{preset.digest}/gallery/cat.webp"
    head = moto.client().head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "image/webp"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    assert head["Metadata"]["preset-digest"] == preset.digest
    assert head["Metadata"]["source"].startswith(f"s3://{bucket}/originals/gallery/cat.jpg:")
    assert not moto.client().list_objects_v2(Bucket=bucket, Prefix="variants/.leases/").get("Contents")

    other = s3_server()  # another instance: served from the bucket, not rendered again
    again = other.get(other.url("thumbnail", "gallery/cat", "webp"))
    assert again.status_code == 200
    assert again.headers["x-imgproxy-tier"] == "store"
    assert again.content == first.content
    assert other.metric("imgproxy_renders_total") == 0


@pytest.mark.parametrize("id", ["etag-utf8", "etag-latin1", "etag-long"])
def test_a_hostile_origin_etag_is_stored_once_in_ascii_metadata(
    server_factory: Callable[..., Server], moto: Moto, bucket: str, origin: str, id: str
) -> None:
    """S3 metadata is ASCII and at most 2 KB; the ETag of an HTTP origin is anyone's bytes."""
    def start() -> Server:
        return server_factory(originals=f"{origin}/img/", variants=f"s3://{bucket}/variants",
                              env=moto.env(IMGPROXY_HTTP_ALLOW_PRIVATE="1"))

    server = start()
    first = server.get(server.url("thumbnail", id, "webp"))
    assert first.status_code == 200 and first.headers["x-imgproxy-tier"] == "render", first.text
    assert server.metric("imgproxy_store_errors_total") == 0, server.logs()
    preset = load_presets(server.env["IMGPROXY_PRESETS"])["thumbnail"]
    head = moto.client().head_object(Bucket=bucket, Key=f"variants/thumbnail/{preset.digest}/{id}.webp")
    source = head["Metadata"]["source"]
    assert source.isascii() and len(source) <= 512, source
    assert sum(len(k) + len(v) for k, v in head["Metadata"].items()) <= 2048

    other = start()  # another instance finds it stored: no second render
    again = other.get(other.url("thumbnail", id, "webp"))
    assert again.status_code == 200 and again.headers["x-imgproxy-tier"] == "store"
    assert again.content == first.content
    assert other.metric("imgproxy_renders_total") == 0


def test_metadata_values_are_ascii_and_bounded() -> None:
    assert metadata_value('https://h/img/a.jpg:"abc"') == 'https://h/img/a.jpg:"abc"'
    assert metadata_value('x:"café 100%"') == 'x:"caf%C3%A9%20100%25"'
    assert metadata_value("\udcff") == "%FF"  # undecodable bytes, kept as escapes
    hashed = metadata_value("e" * 3000)
    assert hashed.startswith("sha256:") and len(hashed) == 71
    assert metadata_value("e" * 3000) == hashed != metadata_value("e" * 2999)


def test_missing_original_is_404(s3_server: Callable[..., Server]) -> None:
    server = s3_server()
    response = server.get(server.url("thumbnail", "nope", "webp"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_original_over_the_byte_cap_is_413(s3_server: Callable[..., Server], moto: Moto, bucket: str) -> None:
    put_original(moto, bucket, "originals/big.jpg", corpus(PHOTO))
    server = s3_server(IMGPROXY_MAX_SOURCE_BYTES="1000")
    response = server.get(server.url("thumbnail", "big", "webp"))
    assert response.status_code == 413
    assert response.json()["limit"] == "max_source_bytes"


def test_missing_bucket_is_503_and_logged_loudly(server_factory: Callable[..., Server], moto: Moto) -> None:
    server = server_factory(originals="s3://no-such-bucket/o", variants="s3://no-such-bucket/v",
                            env=moto.env())
    response = server.get(server.url("thumbnail", "cat", "webp"))
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "CRITICAL" in server.logs()


@pytest.mark.slow
def test_outage_gives_503_then_recovers_without_restart(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    moto = Moto(free_port(), tmp_path / "moto-outage.log")
    moto.start()
    try:
        def seed() -> None:
            moto.client().create_bucket(Bucket="outage")
            put_original(moto, "outage", "o/cat.jpg", corpus(PHOTO))

        seed()
        server = server_factory(
            originals="s3://outage/o", variants="s3://outage/v",
            env=moto.env(IMGPROXY_S3_TIMEOUT="1", IMGPROXY_S3_MAX_ATTEMPTS="2"),
        )
        assert server.get(server.url("thumbnail", "cat", "webp")).status_code == 200

        moto.stop()  # mid-run: the S3 server is gone
        for preset in ("thumb-square", "small", "preview"):
            started = time.monotonic()
            response = server.get(server.url(preset, "cat", "webp"))
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) > 0
            assert time.monotonic() - started < 5
        # A variant in the memory tier is still served.
        assert server.get(server.url("thumbnail", "cat", "webp")).status_code == 200

        moto.start()  # same port; moto keeps its state in memory, so seed it again
        seed()
        deadline = time.monotonic() + 20
        while True:
            response = server.get(server.url("small", "cat", "webp"))
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert response.status_code == 200, response.text
        assert server.proc.poll() is None
    finally:
        moto.stop()


def test_unreachable_s3_is_503_with_retry_after(server_factory: Callable[..., Server], moto: Moto) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = server_factory(
        originals="s3://x-bucket/o", variants="s3://x-bucket/v",
        env={**moto.env(IMGPROXY_S3_TIMEOUT="1", IMGPROXY_S3_MAX_ATTEMPTS="1"), "IMGPROXY_S3_ENDPOINT_URL": dead},
    )
    started = time.monotonic()
    response = server.get(server.url("thumbnail", "cat", "webp"))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert time.monotonic() - started < 5
    assert httpx.get(server.base_url + "/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(("raised", "is_origin", "status", "retry_after"), [
    (ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"), True, 404, None),
    (ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"), False, 503, 5),
    (ClientError({"Error": {"Code": "InvalidAccessKeyId"}}, "GetObject"), True, 503, 5),
    (ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), False, 503, 2),
    (ClientError({"Error": {"Code": "InternalError"}}, "GetObject"), True, 503, 2),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), False, 503, 2),
    (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), True, 503, 2),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True, 504, None),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), False, 503, 2),
])
def test_error_mapping(raised: Exception, is_origin: bool, status: int, retry_after: int | None,
                       caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ImgproxyError) as exc:
        with mapped("get", origin=is_origin):
            raise raised
    assert exc.value.status == status
    assert exc.value.retry_after == retry_after
    assert exc.value.__cause__ is raised
    if "Access" in str(raised):
        assert any(r.levelname == "CRITICAL" for r in caplog.records)


@pytest.fixture
def hung_s3() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a paused S3)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # never accepted: the kernel completes the handshake, nobody reads
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_hung_s3_gets_its_503_within_timeout_times_attempts(
    server_factory: Callable[..., Server], moto: Moto, hung_s3: str
) -> None:
    """docs/OPERATIONS.md promises a miss its 503 within s3_timeout x s3_max_attempts."""
    server = server_factory(
        originals="s3://x-bucket/o", variants="s3://x-bucket/v",
        env={**moto.env(IMGPROXY_S3_TIMEOUT="1", IMGPROXY_S3_MAX_ATTEMPTS="3"), "IMGPROXY_S3_ENDPOINT_URL": hung_s3},
    )
    for preset in ("thumbnail", "small"):
        started = time.monotonic()
        response = server.get(server.url(preset, "cat", "webp"))
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert elapsed < 3 + 0.5, elapsed
    assert "TimeoutError (deadline 3.0s)" in server.logs()


async def test_listing_and_deleting(s3: object, bucket: str, moto: Moto) -> None:
    from imgproxy.stores import id_of

    for key in ("o/a/cat.jpg", "o/a/dog", "o/b/cow.PNG"):
        put_original(moto, bucket, key, corpus(PHOTO))
    originals = S3Originals(s3, f"s3://{bucket}/o", 1 << 30, 10, Spool(1 << 31))
    assert sorted([k async for k in originals.list_keys()]) == ["a/cat.jpg", "a/dog", "b/cow.PNG"]
    assert sorted([id_of(k) async for k in originals.list_keys("a/")]) == ["a/cat", "a/dog"]
    store = S3Variants(s3, f"s3://{bucket}/v", 60)
    assert await store.put("p/d/x.webp", Blob.of(b"1234", 0), {})
    async with store.lease("p/d/y.webp"):  # leaves a lease object that must not be listed
        pass
    assert [e async for e in store.list()] == [("p/d/x.webp", 4)]
    assert await store.delete("p/d/x.webp") and not await store.delete("p/d/x.webp")
    assert [e async for e in store.list()] == []


async def test_an_id_with_several_keys_resolves_the_same_way_after_a_restart(
        s3: object, bucket: str, moto: Moto, caplog: pytest.LogCaptureFixture) -> None:
    for key in ("o/m/logo.png", "o/m/logo.jpg", "o/m/icon.jpg", "o/m/icon.png", "o/m/icon.JPG"):
        put_original(moto, bucket, key, corpus(PHOTO))
    caplog.set_level("WARNING", logger="imgproxy.stores")
    for _ in range(3):  # fresh stores: no process's cache decides
        store = S3Originals(s3, f"s3://{bucket}/o", 10_000_000, 5, Spool(1 << 30))
        assert (await store.fetch("m/logo")).key == "o/m/logo.jpg"
        assert (await store.fetch("m/icon")).key == "o/m/icon.jpg"
        assert (await store.locate("m/icon")).key == "m/icon.jpg"
    warned = [r.getMessage() for r in caplog.records if "stored under" in r.getMessage()]
    assert len(warned) == 2 and "o/m/icon.jpg, o/m/icon.JPG, o/m/icon.png" in warned[1], warned


def test_an_id_beside_a_folder_of_over_1000_keys_resolves(s3_server: Callable[..., Server], moto: Moto,
                                                          bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from imgproxy.urls import original_url

    client = moto.client()
    with ThreadPoolExecutor(8) as pool:  # one client, shared by threads: about 2 s on moto
        list(pool.map(lambda n: client.put_object(Bucket=bucket, Key=f"originals/up/leg2.a/{n}", Body=b""),
                      range(1001)))
    put_original(moto, bucket, "originals/up/leg2.webp", corpus(PHOTO))
    server = s3_server()
    variant = server.get(server.url("thumbnail", "up/leg2", "webp"))
    assert variant.status_code == 200, variant.text
    download = server.get(original_url(server.key, "up/leg2", int(time.time()) + 600, False, server.base_url))
    assert download.status_code == 200 and download.content == corpus(PHOTO).read_bytes(), download.text


async def test_a_full_listing_page_falls_back_to_one_head_per_extension(s3: object, bucket: str,
                                                                        moto: Moto) -> None:
    for key in ("o/h/leg3.a1", "o/h/leg3.a2", "o/h/leg3.a3", "o/h/leg3.PNG", "o/h/leg3.png"):
        put_original(moto, bucket, key, corpus(PHOTO))
    store = S3Originals(s3, f"s3://{bucket}/o", 10_000_000, 5, Spool(1 << 30))
    store.page = 2  # the listing is truncated before any extension key
    assert (await store.fetch("h/leg3")).key == "o/h/leg3.png"
    assert await store.find_key("h/leg3") == "h/leg3.png"
    with pytest.raises(ImgproxyError) as exc:
        await store.fetch("h/leg")
    assert exc.value.status == 404
