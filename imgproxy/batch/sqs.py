"""The job queue: an SQS queue of fan-out jobs, and the two messages it carries.

An imgproxy job message (what ``imgproxy warm --enqueue`` sends)::

    {"id": "gallery/42/photo", "presets": ["thumbnail", "web"], "formats": ["webp", "avif"]}

``presets`` and ``formats`` are optional (default: ``IMGPROXY_WARM_PRESETS``
and ``IMGPROXY_WARM_FORMATS``). An S3 event notification (``ObjectCreated:*``,
sent straight to SQS or through SNS) is a job for each new original under the
originals prefix, with the default presets and formats; other events, other
buckets, keys outside the prefix and keys imgproxy writes itself (variants,
leases and metadata sharing the bucket: :mod:`imgproxy.stores.keyspace`) are
no jobs, only counted. A message that is neither is :class:`BadMessage`: poison.

Each record of an S3 event is its own job: a record that is no job (no key,
a key that is no id) is poison on its own, and the others still run. A body
over :data:`MAX_BODY` bytes or nested deeper than :data:`MAX_DEPTH` is poison
before ``json`` sees it (whose recursion would otherwise end the task).

SQS and botocore errors become :class:`Unavailable` where they enter.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ..errors import BadRequest, Unavailable
from ..stores import id_of
from ..stores.keyspace import KeySpace
from ..urls import check_id

log = logging.getLogger("imgproxy.queue")  # the name log filters already use

#: SQS takes at most 10 messages per receive and per batch send.
BATCH = 10
#: SQS's own cap on a message; anything longer is not one of ours.
MAX_BODY = 1 << 20
#: An S3 event is 4 deep; SNS wraps it in a string, not in more nesting.
MAX_DEPTH = 16
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)  # an escape is one token: \" never ends a string


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


@dataclass
class Parsed:
    """What one message holds: its jobs, and the parts of it that are poison."""

    jobs: list[Job] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # why each poison record is no job
    # S3 event records that are no job, by why: event (not ObjectCreated), outside
    # (another bucket or prefix), own (a key imgproxy wrote itself), test (s3:TestEvent)
    ignored: Counter[str] = field(default_factory=Counter)


def parse(body: str, space: KeySpace, presets: Sequence[str], formats: Sequence[str]) -> Parsed:
    """The jobs in one message; ``space`` tells originals from other keys (for S3 events).
    Raises :class:`BadMessage` when the message as a whole is no job."""
    data = _loads(body)
    if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        data = _loads(data["Message"])  # an S3 event through SNS: one envelope, never more
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    if "Records" in data:
        return _s3_event(data["Records"], space, tuple(presets), tuple(formats))
    if data.get("Event") == "s3:TestEvent":
        return Parsed(ignored=Counter(test=1))  # S3 sends one when notifications are set up
    if "id" in data:
        return Parsed([_job(data, tuple(presets), tuple(formats))])
    raise BadMessage("neither an imgproxy job nor an S3 event notification")


def _loads(text: str) -> Any:
    """JSON of bounded size and depth: ``json`` recurses once per level."""
    if len(text) > MAX_BODY:
        raise BadMessage(f"over {MAX_BODY} characters")
    if _depth(text) > MAX_DEPTH:
        raise BadMessage(f"nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadMessage("not JSON") from None


def _depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest outside strings (the text need not be valid JSON)."""
    depth = deepest = 0
    in_string = False
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue  # a bracket in a string, or an escaped character
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


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


def _s3_event(records: Any, space: KeySpace, presets: tuple[str, ...], formats: tuple[str, ...]) -> Parsed:
    if not isinstance(records, list):
        raise BadMessage("'Records' must be a list")
    parsed = Parsed()
    for record in records:  # one by one: a bad record spoils only itself
        try:
            event, bucket, key = record["eventName"], record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
        except (KeyError, TypeError):
            parsed.bad.append("an S3 event record without eventName, bucket or key")
            continue
        key = unquote_plus(str(key))  # S3 sends keys URL-encoded, spaces as '+'
        if not str(event).startswith("ObjectCreated:"):
            parsed.ignored["event"] += 1
            continue
        original = space.key_of(f"s3://{bucket}/{key}")
        if original is None or space.own(original):
            why = "outside" if original is None else "own"
            log.info("ignored an S3 event for s3://%s/%s (%s): not an original", bucket, key, why)
            parsed.ignored[why] += 1
            continue
        try:
            parsed.jobs.append(Job(check_id(id_of(original)), presets, formats))
        except BadRequest as exc:
            parsed.bad.append(f"S3 key {key!r} is not a valid id: {exc}")
    return parsed


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
