"""Network clients shared by every request of one process.

The app's lifespan makes one :class:`Clients` and closes it at shutdown.
Each client is created on first use, so a setup with only local folders
opens neither (nor the spool where fetched originals wait), and one with S3 originals and S3 variants shares one S3
client (and its connection pool) between both stores.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx

from ..config import Settings
from .spool import Spool


class Clients:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._s3: Any = None
        self._sqs: Any = None
        self._http: httpx.AsyncClient | None = None
        self._spool: Spool | None = None

    def spool(self) -> Spool:
        """Where fetched originals wait for their render, under one byte budget per process."""
        if self._spool is None:
            s = self.settings
            self._spool = Spool(s.originals_budget_mb * 1024 * 1024, s.spool_dir)
            self._stack.callback(self._spool.close)
        return self._spool

    async def s3(self) -> Any:
        """The aiobotocore S3 client: pooled, with timeouts and retries with backoff."""
        if self._s3 is None:
            import aioboto3
            from botocore.config import Config

            s = self.settings
            config = Config(
                connect_timeout=s.s3_timeout,
                read_timeout=s.s3_timeout,
                # "standard" retries throttling, 5xx and dropped connections
                # with jittered exponential backoff.
                retries={"mode": "standard", "max_attempts": s.s3_max_attempts},
                max_pool_connections=s.s3_max_connections,
                s3={"addressing_style": "path" if s.s3_endpoint_url else "auto"},
            )
            self._s3 = await self._stack.enter_async_context(
                aioboto3.Session().client("s3", endpoint_url=s.s3_endpoint_url or None, config=config)
            )
        return self._s3

    async def sqs(self) -> Any:
        """The aiobotocore SQS client (warm --enqueue, consume); reads wait up to 20 s for long polls."""
        if self._sqs is None:
            import aioboto3
            from botocore.config import Config

            s = self.settings
            config = Config(connect_timeout=s.s3_timeout, read_timeout=s.s3_timeout + 20,
                            retries={"mode": "standard", "max_attempts": s.s3_max_attempts})
            self._sqs = await self._stack.enter_async_context(
                aioboto3.Session().client("sqs", endpoint_url=s.sqs_endpoint_url or None, config=config)
            )
        return self._sqs

    def http(self) -> httpx.AsyncClient:
        """The HTTP origin client: redirects are ours to follow, addresses are checked."""
        if self._http is None:
            from .guard import GuardedTransport

            s = self.settings
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
            self._http = httpx.AsyncClient(
                transport=GuardedTransport(s.http_allow_private, limits),
                timeout=httpx.Timeout(s.download_timeout, connect=min(s.download_timeout, 5.0)),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": "imgproxy"},
            )
            self._stack.push_async_callback(self._http.aclose)
        return self._http

    async def aclose(self) -> None:
        await self._stack.aclose()
