"""Render leases on a shared S3 variant bucket: exactly one render per variant.

Every instance that misses a variant asks for the lease on its key; the
docs/EXACTLY_ONCE.md explains why. One small lease
object per variant key, ``<prefix>.leases/<variant key>``, changed only by
conditional writes::

    take      PUT lease  If-None-Match: *     when there is no lease object
              PUT lease  If-Match: <ETag>     when the one seen has expired or
                                              was released (the ETag is the
                                              one we saw, so one taker wins)
    wait      someone else holds it: poll the variant (and the lease) with
              backoff from 50 ms up to 1 s; serve the variant when it appears
    hold      re-check the variant (stored before we got the lease?), then
              the caller renders and stores it with If-None-Match: *
    renew     while held, PUT it again If-Match our ETag every third of its
              period, so a long hold (a fan-out's many variants, a slow
              render) is never taken for a dead one
    release   variant stored: DELETE the lease (anyone who takes a lease
              re-checks the variant first, so this is safe at any time);
              otherwise PUT it back as "released" If-Match our ETag, so a
              waiter takes over at once instead of at expiry

Expiry is judged on S3's clock alone: a lease's age is the ``Date`` of the
response that read it minus its ``Last-Modified``, so clocks of instances
never matter. Each lease body carries a random nonce, so every take has a
new ETag and an ``If-Match`` can only ever win against the lease it saw.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..errors import NotFound, Unavailable
from ..metrics import LEASES
from . import Blob
from .s3errors import lost_race, mapped

log = logging.getLogger("imgproxy.stores")

FIRST_POLL, MAX_POLL = 0.05, 1.0
#: Waiting this many lease periods without a new holder means something keeps failing.
MAX_WAIT_LEASES = 3
_RESOLUTION = 1.0  # Last-Modified and Date have whole seconds


@dataclass(frozen=True)
class LeaseState:
    etag: str
    held: bool
    remaining: float  # seconds until it expires, on S3's clock


class S3Lease:
    def __init__(self, client: Any, bucket: str, prefix: str, seconds: float,
                 deadline: float | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.seconds = seconds
        self.deadline = deadline  # per S3 call, retries included
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.renew_every: float | None = seconds / 3  # None: never (a holder cut off from S3)

    @asynccontextmanager
    async def hold(
        self,
        key: str,
        get: Callable[[str], Awaitable[Blob | None]],
        exists: Callable[[str], Awaitable[bool]],
    ) -> AsyncIterator[Blob | None]:
        """Yields the variant if it was stored meanwhile, else None while we hold the lease."""
        stored, etag = await self._acquire(key, get)
        if stored is not None:
            yield stored
            return
        assert etag is not None
        ours = [etag]  # renewals replace it
        renewing = asyncio.ensure_future(self._renew(key, ours, self.renew_every))
        done = False
        try:
            stored = await get(key)  # stored between our miss and our lease?
            yield stored
            done = True
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await asyncio.shield(self._release(key, ours[0], done and stored is not None, done, exists))

    async def _renew(self, key: str, ours: list[str], every: float | None) -> None:
        """Refresh the lease's Last-Modified (its age on S3's clock) while we hold it."""
        while every is not None:
            await asyncio.sleep(every)
            try:
                etag = await self._take(key, LeaseState(ours[0], True, 0.0))
            except Unavailable as exc:  # S3 slow or down: the next round may get through
                log.warning("could not renew the render lease of %s: %s", key, exc)
                continue
            if etag is None:  # taken over: we were too slow once; the store stays right
                log.warning("lost the render lease of %s while holding it", key)
                return
            ours[0] = etag
            LEASES.labels("renewed").inc()

    async def _acquire(
        self, key: str, get: Callable[[str], Awaitable[Blob | None]]
    ) -> tuple[Blob | None, str | None]:
        etag = await self._take(key, None)
        if etag is not None:
            LEASES.labels("taken").inc()
            return None, etag
        delay = FIRST_POLL
        give_up = time.monotonic() + MAX_WAIT_LEASES * self.seconds
        seen: str | None = None
        LEASES.labels("waited").inc()
        while time.monotonic() < give_up:
            state = await self._read(key)
            if state is not None and state.etag != seen:
                # A new holder is progress: wait up to as long for it as for the first.
                seen = state.etag
                give_up = max(give_up, time.monotonic() + MAX_WAIT_LEASES * self.seconds)
            if state is None or not state.held or state.remaining <= 0:
                etag = await self._take(key, state)
                if etag is not None:
                    LEASES.labels("taken_over" if state is not None and state.held else "taken").inc()
                    if state is not None and state.held:
                        log.warning("took over the expired render lease of %s", key)
                    return None, etag
                continue  # another instance won this round: read the new lease
            stored = await get(key)
            if stored is not None:
                return stored, None
            await asyncio.sleep(min(delay, max(state.remaining, 0.01)))
            delay = min(delay * 1.5, MAX_POLL)
        raise Unavailable("the variant is being rendered elsewhere; retry", retry_after=2)

    async def _take(self, key: str, seen: LeaseState | None) -> str | None:
        """Our ETag if a conditional write gave us the lease, None if another writer won."""
        condition = {"IfNoneMatch": "*"} if seen is None else {"IfMatch": seen.etag}
        body = json.dumps({"holder": self.holder, "nonce": uuid.uuid4().hex,
                           "seconds": self.seconds}).encode()
        try:
            with mapped("lease", deadline=self.deadline):
                try:
                    response = await self.client.put_object(
                        Bucket=self.bucket, Key=self._key(key), Body=body,
                        ContentType="application/json",
                        Metadata={"state": "held", "seconds": str(self.seconds)},
                        **condition,
                    )
                except ClientError as exc:
                    if lost_race(exc):
                        return None
                    raise
        except NotFound:  # If-Match on a lease deleted meanwhile
            return None
        return str(response["ETag"])

    async def _read(self, key: str) -> LeaseState | None:
        try:
            with mapped("lease", deadline=self.deadline):
                head = await self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return None
        headers = head["ResponseMetadata"].get("HTTPHeaders", {})
        # S3's clock; a service that sends no Date falls back on ours (skew then matters).
        now = (email.utils.parsedate_to_datetime(headers["date"]) if "date" in headers
               else datetime.now(UTC))
        age = (now - head["LastModified"]).total_seconds()
        seconds = float(head.get("Metadata", {}).get("seconds", self.seconds))
        held = head.get("Metadata", {}).get("state") == "held"
        return LeaseState(str(head["ETag"]), held, seconds + _RESOLUTION - age)

    async def _release(
        self, key: str, etag: str, found: bool, done: bool, exists: Callable[[str], Awaitable[bool]]
    ) -> None:
        """Best effort: a lease left behind only delays a retry until it expires.

        ``done``: the holder's work ended without an error; ``found``: the
        variant was already there when it got the lease.
        """
        try:
            if found or (done and await exists(key)):
                with mapped("lease", deadline=self.deadline):
                    await self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
                return
            with mapped("lease", deadline=self.deadline):
                try:
                    await self.client.put_object(
                        Bucket=self.bucket, Key=self._key(key),
                        Body=json.dumps({"released_by": self.holder, "nonce": uuid.uuid4().hex}).encode(),
                        ContentType="application/json", Metadata={"state": "released"},
                        IfMatch=etag,
                    )
                except ClientError as exc:
                    if not lost_race(exc):  # lost: taken over after we were too slow
                        raise
        except Exception as exc:
            log.warning("could not release the render lease of %s: %s", key, exc)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

