"""The job queue: an SQS queue of fan-out jobs, and the two messages it carries.

An imgproxy job message (what ``imgproxy warm --enqueue`` sends)::

    {"id": "gallery/42/photo", "presets": ["thumbnail", "web"], "formats": ["webp", "avif"]}

``presets`` and ``formats`` are optional (default: ``IMGPROXY_WARM_PRESETS``
and ``IMGPROXY_WARM_FORMATS``). An S3 event notification (``ObjectCreated:*``,
sent straight to SQS or through SNS) is a job for each new original under the
originals prefix, with the default presets and formats; other events, other
buckets and keys outside the prefix (the variants, if they share the bucket)
are no jobs. A message that is neither is :class:`BadMessage`: poison.

SQS and botocore errors become :class:`Unavailable` where they enter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from .errors import BadRequest, ImgproxyError, Unavailable
from .stores import id_of
from .urls import check_id

log = logging.getLogger("imgproxy.queue")

#: SQS takes at most 10 messages per receive and per batch send.
BATCH = 10


class BadMessage(ValueError):
    """A message that no retry can make into a job: deleted and counted, never retried."""


@dataclass(frozen=True)
class Job:
    id: str
    presets: tuple[str, ...]
    formats: tuple[str, ...]

    def message(self) -> str:
        return json.dumps({"id": self.id, "presets": list(self.presets), "formats": list(self.formats)})


@dataclass(frozen=True)
class Message:
    receipt: str
    body: str
    receives: int  # ApproximateReceiveCount: 1 the first time


def parse(body: str, originals: str, presets: Sequence[str], formats: Sequence[str]) -> list[Job]:
    """The jobs in one message; ``originals`` is the originals store URL (for S3 events)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise BadMessage("not JSON") from None
    if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse(data["Message"], originals, presets, formats)  # an S3 event through SNS
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    if "Records" in data:
        return _s3_event(data["Records"], originals, tuple(presets), tuple(formats))
    if data.get("Event") == "s3:TestEvent":
        return []  # S3 sends one when notifications are set up
    if "id" in data:
        return [_job(data, tuple(presets), tuple(formats))]
    raise BadMessage("neither an imgproxy job nor an S3 event notification")


def _job(data: dict[str, Any], presets: tuple[str, ...], formats: tuple[str, ...]) -> Job:
    def names(field: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = data.get(field, default)
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise BadMessage(f"{field!r} must be a non-empty list of names")
        return tuple(value)

    if not isinstance(data["id"], str):
        raise BadMessage("'id' must be a string")
    try:
        return Job(check_id(data["id"]), names("presets", presets), names("formats", formats))
    except BadRequest as exc:
        raise BadMessage(f"bad id {data['id']!r}: {exc}") from None


def _s3_event(records: Any, originals: str, presets: tuple[str, ...], formats: tuple[str, ...]) -> list[Job]:
    if not isinstance(records, list):
        raise BadMessage("'Records' must be a list")
    store = urlsplit(originals)
    prefix = store.path.strip("/") + "/" if store.path.strip("/") else ""
    jobs = []
    for record in records:
        try:
            event, bucket, key = record["eventName"], record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
        except (KeyError, TypeError):
            raise BadMessage("an S3 event record without eventName, bucket or key") from None
        key = unquote_plus(str(key))  # S3 sends keys URL-encoded, spaces as '+'
        if not str(event).startswith("ObjectCreated:"):
            continue
        if store.scheme != "s3" or bucket != store.netloc or not key.startswith(prefix):
            log.info("ignored an S3 event for s3://%s/%s: not under the originals store %s", bucket, key, originals)
            continue
        try:
            jobs.append(Job(check_id(id_of(key[len(prefix):])), presets, formats))
        except BadRequest as exc:
            raise BadMessage(f"S3 key {key!r} is not a valid id: {exc}") from None
    return jobs


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    import aiohttp
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
        log.error("SQS %s failed: %s", what, exc)
        raise Unavailable(f"the queue is unavailable ({what})", retry_after=2) from exc


class SqsQueue:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    async def visibility_timeout(self) -> int:
        with _mapped("get_queue_attributes"):
            r = await self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["VisibilityTimeout"])
        return int(r["Attributes"]["VisibilityTimeout"])

    async def receive(self, most: int, wait: int) -> list[Message]:
        with _mapped("receive_message"):
            r = await self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=max(1, min(BATCH, most)), WaitTimeSeconds=wait,
                AttributeNames=["ApproximateReceiveCount"],
            )
        return [Message(m["ReceiptHandle"], m["Body"], int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
                for m in r.get("Messages", [])]

    async def delete(self, message: Message) -> None:
        with _mapped("delete_message"):
            await self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)

    async def extend(self, message: Message, seconds: int) -> None:
        """Hide ``message`` for ``seconds`` more from now (a long job is still running)."""
        with _mapped("change_message_visibility"):
            await self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=seconds)

    async def send(self, bodies: Sequence[str]) -> None:
        """Send every body, ten per request; raises Unavailable if any was not accepted."""
        for start in range(0, len(bodies), BATCH):
            chunk = bodies[start:start + BATCH]
            with _mapped("send_message_batch"):
                r = await self.client.send_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])
            if r.get("Failed"):
                raise Unavailable(f"SQS refused {len(r['Failed'])} message(s): {r['Failed'][0].get('Message')}")


def is_poison(exc: ImgproxyError) -> bool:
    """The original's fault (4xx): retrying cannot help."""
    return exc.status < 500
