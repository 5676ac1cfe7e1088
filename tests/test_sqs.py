"""Queue messages: imgproxy jobs and S3 event notifications (the real format, as S3 and SNS send them)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgproxy.batch.sqs import MAX_DEPTH, BadMessage, Job, parse
from imgproxy.stores.keyspace import key_space

SPACE = key_space("s3://photos/uploads", "s3://photos/variants")
DEFAULTS = (("thumbnail", "web"), ("webp", "avif"))


def record(key: str, bucket: str = "photos", name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, "size": 1, "eTag": "9dd4e461268c8034f5c8564e155c67a6"}}}


def event(key: str, bucket: str = "photos", name: str = "ObjectCreated:Put") -> str:
    return json.dumps({"Records": [record(key, bucket, name)]})


def test_a_job_message_round_trips_and_takes_defaults() -> None:
    job = Job("gallery/42/p", ("web",), ("jpg",))
    assert parse(job.message(), SPACE, *DEFAULTS).jobs == [job]
    assert parse('{"id": "a/b"}', SPACE, *DEFAULTS).jobs == [Job("a/b", ("thumbnail", "web"), ("webp", "avif"))]


def test_s3_events_become_jobs_for_originals_only() -> None:
    assert parse(event("uploads%2Fwedding%2Fp-1.JPG"), SPACE, *DEFAULTS).jobs == [
        Job("wedding/p-1", ("thumbnail", "web"), ("webp", "avif"))]
    assert parse(event("variants/web/abc/p.webp"), SPACE, *DEFAULTS).jobs == []
    assert parse(event("uploads/p.jpg", bucket="other"), SPACE, *DEFAULTS).jobs == []
    assert parse(event("uploads/p.jpg", name="ObjectRemoved:Delete"), SPACE, *DEFAULTS).jobs == []
    assert parse(event("uploads/p.jpg"), key_space("file:///srv/o", "file:///srv/v"), *DEFAULTS).jobs == []
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "photos"}
    assert parse(json.dumps(test), SPACE, *DEFAULTS).ignored == {"test": 1}
    sns = {"Type": "Notification", "MessageId": "x", "Message": event("uploads/a.png")}
    assert parse(json.dumps(sns), SPACE, *DEFAULTS).jobs[0].id == "a"


@pytest.mark.parametrize("body", [
    "not json", "[1, 2]", "{}", '{"id": 5}', '{"id": "../x"}', '{"id": "a", "presets": []}',
    '{"id": "a", "formats": "webp"}', '{"Records": "x"}',
])
def test_bad_messages_are_poison(body: str) -> None:
    with pytest.raises(BadMessage):
        parse(body, SPACE, *DEFAULTS)


def test_keys_imgproxy_writes_itself_in_a_shared_bucket_are_no_jobs() -> None:
    loop = key_space("s3://loop", "s3://loop/variants")
    keys = ["variants/.leases/thumbnail/0123456789ab/photo.webp", "variants/thumbnail/0123456789ab/photo.webp",
            "variants/_meta/v1/photo.json", "photo.jpg", "variants-2024/photo.jpg"]
    parsed = parse(json.dumps({"Records": [record(k, bucket="loop") for k in keys]}), loop, *DEFAULTS)
    assert [job.id for job in parsed.jobs] == ["photo", "variants-2024/photo"]
    assert parsed.ignored == {"own": 3} and not parsed.bad
    other = parse(json.dumps({"Records": [record("x.jpg", bucket="b"), record("y.jpg", name="ObjectRemoved:Delete")]}),
                  loop, *DEFAULTS)
    assert other.ignored == {"outside": 1, "event": 1} and not other.jobs


def test_an_s3_key_that_is_no_id_is_a_poison_record() -> None:
    parsed = parse(event("uploads/photo+1.jpg"), SPACE, *DEFAULTS)  # "photo 1": ids have no spaces
    assert parsed.jobs == [] and len(parsed.bad) == 1


def test_a_bad_record_spoils_only_itself() -> None:
    records = [record("uploads/a.jpg"), {"s3": {}}, record("uploads/no+id.jpg"), "junk", record("uploads/b.png")]
    parsed = parse(json.dumps({"Records": records}), SPACE, *DEFAULTS)
    assert [job.id for job in parsed.jobs] == ["a", "b"]
    assert len(parsed.bad) == 3


@pytest.mark.parametrize("body", [
    "[" * 100_000, '{"a":' * 100_000, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    json.dumps({"Type": "Notification", "Message": "[" * 100_000}), "x" * (2 << 20),
])
def test_a_deep_or_huge_body_is_poison_not_a_crash(body: str) -> None:
    with pytest.raises(BadMessage):
        parse(body, SPACE, *DEFAULTS)


def test_brackets_and_escapes_inside_strings_are_no_nesting() -> None:
    id = {"id": "a", "note": '[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{\\"' + "[" * 40 + '\\'}
    assert parse(json.dumps(id), SPACE, *DEFAULTS).jobs[0].id == "a"
