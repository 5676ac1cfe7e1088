"""Queue messages: imgproxy jobs and S3 event notifications (the real format, as S3 and SNS send them)."""

from __future__ import annotations

import json

import pytest

from imgproxy.queue import BadMessage, Job, parse

ORIGINALS = "s3://photos/uploads"
DEFAULTS = (("thumbnail", "web"), ("webp", "avif"))


def event(key: str, bucket: str = "photos", name: str = "ObjectCreated:Put") -> str:
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 1, "eTag": "9dd4e461268c8034f5c8564e155c67a6"}}}]})


def test_a_job_message_round_trips_and_takes_defaults() -> None:
    job = Job("gallery/42/p", ("web",), ("jpg",))
    assert parse(job.message(), ORIGINALS, *DEFAULTS) == [job]
    assert parse('{"id": "a/b"}', ORIGINALS, *DEFAULTS) == [Job("a/b", ("thumbnail", "web"), ("webp", "avif"))]


def test_s3_events_become_jobs_for_originals_only() -> None:
    assert parse(event("uploads%2Fwedding%2Fp-1.JPG"), ORIGINALS, *DEFAULTS) == [
        Job("wedding/p-1", ("thumbnail", "web"), ("webp", "avif"))]
    assert parse(event("variants/web/abc/p.webp"), ORIGINALS, *DEFAULTS) == []
    assert parse(event("uploads/p.jpg", bucket="other"), ORIGINALS, *DEFAULTS) == []
    assert parse(event("uploads/p.jpg", name="ObjectRemoved:Delete"), ORIGINALS, *DEFAULTS) == []
    assert parse(event("uploads/p.jpg"), "file:///srv/originals", *DEFAULTS) == []
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "photos"}
    assert parse(json.dumps(test), ORIGINALS, *DEFAULTS) == []
    sns = {"Type": "Notification", "MessageId": "x", "Message": event("uploads/a.png")}
    assert parse(json.dumps(sns), ORIGINALS, *DEFAULTS)[0].id == "a"


@pytest.mark.parametrize("body", [
    "not json", "[1, 2]", "{}", '{"id": 5}', '{"id": "../x"}', '{"id": "a", "presets": []}',
    '{"id": "a", "formats": "webp"}', '{"Records": "x"}', '{"Records": [{"s3": {}}]}',
])
def test_bad_messages_are_poison(body: str) -> None:
    with pytest.raises(BadMessage):
        parse(body, ORIGINALS, *DEFAULTS)


def test_an_s3_key_that_is_no_id_is_poison() -> None:
    with pytest.raises(BadMessage):
        parse(event("uploads/photo+1.jpg"), ORIGINALS, *DEFAULTS)  # "photo 1": ids have no spaces
