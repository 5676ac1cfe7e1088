"""``imgproxy consume``: real consumer processes on moto's SQS (and S3), real render workers.

Every queue has a dead-letter queue through a redrive policy with
maxReceiveCount 3, as docs/WARMUP.md tells operators to set up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import KEY, ROOT, S3_ENV, Moto, corpus, free_port, spawn

from imgproxy.presets import load_presets
from imgproxy.variants.service import keys_of

pytestmark = pytest.mark.slow

PHOTOS = ["exif/mei__Apple_iPhone_4.jpg", "exif/mei__Nikon_D1X.jpg", "exif/exifjs__dsc_09827.jpg",
          "exif/mei__Canon_EOS_REBEL_T3i.jpg", "exif/mei__Olympus_PEN_E-P3.jpg", "exif/mei__Nikon_D5000.jpg"]
LARGE = "large/mei__Issue_266.jpg"
PRESETS = load_presets(ROOT / "config" / "presets.toml")


@dataclass
class Queue:
    url: str
    dlq: str
    sqs: Any

    def send(self, body: dict[str, Any] | str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body if isinstance(body, str) else json.dumps(body))

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages."""
        a = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def queue(moto: Moto) -> Queue:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto.endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    name = "q-" + uuid.uuid4().hex[:12]
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "3",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"}),
    })["QueueUrl"]
    return Queue(url, dlq, sqs)


def consumer(tmp: Path, moto: Moto, queue: Queue, *args: str, env: dict[str, str] | None = None,
             name: str = "c") -> tuple[subprocess.Popen[bytes], Path]:
    full = {**os.environ, **S3_ENV, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
            "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"), "IMGPROXY_KEYS": KEY,
            "IMGPROXY_ORIGINALS": (tmp / "originals").as_uri(), "IMGPROXY_VARIANTS": (tmp / "variants").as_uri(),
            "IMGPROXY_SQS_ENDPOINT_URL": moto.endpoint, "IMGPROXY_S3_ENDPOINT_URL": moto.endpoint,
            "IMGPROXY_RENDER_THREADS": "1", **(env or {})}
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp / f"consumer-{name}.log"
    proc = spawn([sys.executable, "-m", "imgproxy", "consume", queue.url, *args], env=full, cwd=tmp,
                 stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, log


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> dict[str, Any]:
    """Wait for a consumer to exit 0; its final counts."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"consumer did not exit:\n{log.read_text()[-3000:]}") from None
    text = log.read_text()
    assert code == 0, text[-3000:]
    return json.loads([line for line in text.splitlines() if line.startswith('{"consumer"')][-1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def originals(tmp: Path, photos: list[str]) -> list[str]:
    ids = []
    for i, photo in enumerate(photos):
        target = tmp / "originals" / "g" / f"{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus(photo), target)
        ids.append(f"g/{i}")
    return ids


def stored(tmp: Path) -> list[Path]:
    return [p for p in (tmp / "variants").rglob("*") if p.is_file() and ".locks" not in p.parts]


def targets(presets: list[str], formats: list[str]) -> list[tuple[Any, str]]:
    return [(PRESETS[p], f) for p in presets for f in formats]


def test_two_consumers_render_every_variant_exactly_once(tmp_path: Path, moto: Moto, queue: Queue) -> None:
    ids = originals(tmp_path, PHOTOS)
    job = {"presets": ["thumbnail", "web"], "formats": ["webp", "jpg"]}
    for id in ids * 2:  # every job twice: the consumers race for the same variants
        queue.send({"id": id, **job})
    started = time.monotonic()
    a = consumer(tmp_path, moto, queue, "--concurrency", "2", "--idle-exit", "4", name="a")
    b = consumer(tmp_path, moto, queue, "--concurrency", "2", "--idle-exit", "4", name="b")
    counts = [finish(*a), finish(*b)]
    took = time.monotonic() - started
    print(f"\ntwo consumers, {len(ids) * 2} messages, {len(ids) * 4} variants, {took:.1f}s:")
    for c in counts:
        print("  " + json.dumps(c))
    assert sum(c["rendered"] for c in counts) == len(ids) * 4
    assert sum(c["rendered"] + c["skipped"] for c in counts) == len(ids) * 2 * 4
    assert sum(c["done"] for c in counts) == len(ids) * 2 and all(c["done"] > 0 for c in counts)
    expected = sorted(k for id in ids for k in keys_of(id, targets(job["presets"], job["formats"])))
    assert sorted(str(p.relative_to(tmp_path / "variants")) for p in stored(tmp_path)) == expected
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_a_consumer_killed_mid_job_loses_nothing(tmp_path: Path, moto: Moto, queue: Queue) -> None:
    (id,) = originals(tmp_path, [LARGE])
    job = {"id": id, "presets": ["web", "medium"], "formats": ["webp", "avif"]}
    queue.send(job)
    proc, log = consumer(tmp_path, moto, queue, name="killed")
    wait_for(lambda: "rendering g/0" in log.read_text(), 60, "the job to start")
    time.sleep(0.5)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)  # the machine is gone: consumer and its render workers
    proc.wait(10)
    assert stored(tmp_path) == [], "nothing partial, nothing half-done"
    assert queue.counts() == (0, 1)  # in flight, not lost
    # A second consumer gets it once the visibility timeout has passed.
    second = finish(*consumer(tmp_path, moto, queue, "--idle-exit", "6", name="second"))
    assert (second["done"], second["rendered"]) == (1, 4), second
    assert len(stored(tmp_path)) == 4
    assert all(p.suffix in (".webp", ".avif") and p.stat().st_size > 0 for p in stored(tmp_path))
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_poison_is_deleted_not_looped(tmp_path: Path, moto: Moto, queue: Queue) -> None:
    (tmp_path / "originals").mkdir()
    (tmp_path / "originals" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 50)
    ids = originals(tmp_path, PHOTOS[:1])
    queue.send({"id": "bad", "presets": ["thumbnail"], "formats": ["webp", "jpg"]})
    queue.send("this is not JSON")
    queue.send({"id": "../etc/passwd"})
    queue.send({"id": "missing"})  # 404: the original's fault too
    queue.send({"id": ids[0], "presets": ["no-such-preset"]})
    queue.send({"id": ids[0], "presets": ["thumbnail"], "formats": ["webp"]})
    counts = finish(*consumer(tmp_path, moto, queue, "--idle-exit", "5", name="poison"))
    assert (counts["poison"], counts["done"], counts["retried"], counts["rendered"]) == (5, 1, 0, 1), counts
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)
    assert len(stored(tmp_path)) == 1


def test_an_s3_upload_notification_renders_the_default_presets(tmp_path: Path, moto: Moto, queue: Queue,
                                                               bucket: str) -> None:
    s3 = moto.client()
    arn = queue.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Notifications for the whole bucket: the variants written there must not become jobs.
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="uploads/wedding/photo 1.jpg", Body=corpus(PHOTOS[0]).read_bytes())
    port = free_port()
    env = {"IMGPROXY_ORIGINALS": f"s3://{bucket}/uploads", "IMGPROXY_VARIANTS": f"s3://{bucket}/variants",
           "IMGPROXY_WARM_PRESETS": "thumbnail,web", "IMGPROXY_WARM_FORMATS": "webp,jpg"}
    proc, log = consumer(tmp_path, moto, queue, "--idle-exit", "5", "--metrics-port", str(port), env=env, name="s3")
    # "photo 1" is not an id (ids have no spaces): poison. Upload a good one while it runs.
    s3.put_object(Bucket=bucket, Key="uploads/wedding/photo-2.jpg", Body=corpus(PHOTOS[1]).read_bytes())

    def metric(name: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    wait_for(lambda: metric('imgproxy_queue_variants_total{outcome="rendered"}') >= 4, 120, "renders")
    counts = finish(proc, log)
    assert counts["rendered"] == 4 and counts["poison"] == 1, counts
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="variants/")["Contents"])
    expected = sorted("variants/" + k for k in keys_of("wedding/photo-2", targets(["thumbnail", "web"],
                                                                                  ["webp", "jpg"])))
    assert [k for k in keys if not k.startswith("variants/.lease")] == expected
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_sigterm_finishes_the_job_in_hand_and_exits_0(tmp_path: Path, moto: Moto, queue: Queue) -> None:
    (id,) = originals(tmp_path, [LARGE])
    queue.send({"id": id, "presets": ["web", "medium"], "formats": ["webp", "jpg"]})
    queue.send({"id": id, "presets": ["thumbnail"], "formats": ["webp"]})
    proc, log = consumer(tmp_path, moto, queue, "--concurrency", "1", name="term")
    wait_for(lambda: "rendering g/0: 4 variants" in log.read_text(), 60, "the first job")
    proc.send_signal(signal.SIGTERM)
    counts = finish(proc, log, timeout=60)
    assert (counts["done"], counts["rendered"]) == (1, 4), counts
    assert queue.counts()[0] + queue.counts()[1] == 1  # the second job was not taken (or comes back)


def test_an_origin_outage_is_redelivered_and_rendered_when_it_is_back(tmp_path: Path, moto: Moto,
                                                                      queue: Queue) -> None:
    ids = originals(tmp_path, PHOTOS[:1])
    port = free_port()  # the origin: nothing listens yet
    env = {"IMGPROXY_ORIGINALS": f"http://127.0.0.1:{port}/", "IMGPROXY_HTTP_ALLOW_PRIVATE": "1"}
    queue.send({"id": ids[0], "presets": ["thumbnail"], "formats": ["webp"]})
    proc, log = consumer(tmp_path, moto, queue, "--idle-exit", "6", env=env, name="outage")
    wait_for(lambda: "left for redelivery (receive 1)" in log.read_text(), 60, "the first failure")
    assert stored(tmp_path) == []
    origin = spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                    "--directory", str(tmp_path / "originals")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        counts = finish(proc, log)
    finally:
        origin.kill()
        origin.wait()
    assert counts["retried"] >= 1 and (counts["done"], counts["rendered"]) == (1, 1), counts
    assert len(stored(tmp_path)) == 1
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_a_job_that_keeps_failing_ends_in_the_dead_letter_queue(tmp_path: Path, moto: Moto,
                                                                queue: Queue) -> None:
    env = {"IMGPROXY_ORIGINALS": f"http://127.0.0.1:{free_port()}/", "IMGPROXY_HTTP_ALLOW_PRIVATE": "1"}
    queue.send({"id": "g/0", "presets": ["thumbnail"], "formats": ["webp"]})
    counts = finish(*consumer(tmp_path, moto, queue, "--idle-exit", "6", env=env, name="dlq"))
    # Three receives (maxReceiveCount 3), each left for redelivery; then SQS moves it.
    assert (counts["retried"], counts["done"], counts["poison"]) == (3, 0, 0), counts
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (1, 0)
    assert stored(tmp_path) == []


def test_a_job_longer_than_the_visibility_timeout_stays_hidden(tmp_path: Path, moto: Moto, queue: Queue) -> None:
    queue.sqs.set_queue_attributes(QueueUrl=queue.url, Attributes={"VisibilityTimeout": "1"})
    (id,) = originals(tmp_path, [LARGE])
    queue.send({"id": id, "presets": ["web", "medium"], "formats": ["webp", "avif"]})
    started = time.monotonic()
    a = consumer(tmp_path, moto, queue, "--idle-exit", "4", name="a")
    b = consumer(tmp_path, moto, queue, "--idle-exit", "4", name="b")
    counts = [finish(*a), finish(*b)]
    assert time.monotonic() - started > 1
    # Without the extension the other consumer would receive it again after 1 s.
    assert sum(c["done"] for c in counts) == 1 and sum(c["rendered"] for c in counts) == 4, counts
    assert "(receive 2)" not in a[1].read_text() + b[1].read_text()
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_a_deep_body_is_poison_and_a_bad_record_spoils_only_itself(tmp_path: Path, moto: Moto, queue: Queue,
                                                                     bucket: str) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=bucket, Key="uploads/g/ok.jpg", Body=corpus(PHOTOS[0]).read_bytes())

    def record(key: str) -> dict[str, Any]:
        return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}

    queue.send("[" * 100_000)  # json's recursion would end the task, and the message would loop to the DLQ
    queue.send({"Records": [{"s3": {}}, record("uploads/bad+key.jpg"), record("uploads/g/ok.jpg")]})
    env = {"IMGPROXY_ORIGINALS": f"s3://{bucket}/uploads", "IMGPROXY_WARM_PRESETS": "thumbnail",
           "IMGPROXY_WARM_FORMATS": "webp"}
    counts = finish(*consumer(tmp_path, moto, queue, "--idle-exit", "5", env=env, name="edge"))
    assert (counts["poison"], counts["rendered"], counts["retried"]) == (2, 1, 0), counts
    assert [p.name for p in stored(tmp_path)] == ["ok.webp"]
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)


def test_a_bucket_notifying_its_own_consumer_does_not_feed_on_its_variants(tmp_path: Path, moto: Moto,
                                                                           queue: Queue, bucket: str) -> None:
    s3 = moto.client()
    arn = queue.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=corpus(PHOTOS[0]).read_bytes())
    # The originals are the whole bucket, and the variant store (leases, metadata) lives inside it.
    env = {"IMGPROXY_ORIGINALS": f"s3://{bucket}", "IMGPROXY_VARIANTS": f"s3://{bucket}/variants",
           "IMGPROXY_WARM_PRESETS": "thumbnail,web", "IMGPROXY_WARM_FORMATS": "webp"}
    proc, log = consumer(tmp_path, moto, queue, "--idle-exit", "5", env=env, name="loop")
    counts = finish(proc, log, timeout=90)
    # Two variants, each with its lease: at least four events of keys of our own, all ignored.
    assert (counts["done"], counts["rendered"], counts["poison"]) == (1, 2, 0), counts
    assert counts["ignored"] >= 4, counts
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    expected = ["photo.jpg"] + sorted("variants/" + k for k in keys_of("photo", targets(["thumbnail", "web"],
                                                                                          ["webp"])))
    assert [k for k in keys if not k.startswith("variants/.leases/")] == expected
    assert "rendering variants" not in log.read_text()
    assert queue.counts() == (0, 0) and queue.counts(queue.dlq) == (0, 0)
