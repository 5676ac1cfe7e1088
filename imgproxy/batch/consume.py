"""``imgproxy consume QUEUE_URL``: render the fan-out jobs of an SQS queue, on any number of machines.

Each message (:mod:`imgproxy.batch.sqs`: a job, or an S3 ``ObjectCreated`` event)
becomes fan-out jobs (:meth:`VariantService.fan_out`), so every variant is rendered
exactly once however many consumers, warm-ups and servers share the stores.

    received ──not a job──────────────> poison: logged, counted, deleted
        │  (an S3 event's bad record is poison alone; its other records run)
    received ──an S3 event of no original (imgproxy's own keys too)──> ignored: counted, deleted
        └─ fan out (visibility extended while it runs)
              ├─ done, or the original's fault (4xx) ──> deleted (4xx counted as poison)
              └─ store, origin or worker failed (5xx), or a bug ──> left: SQS redelivers it,
                                                                    and after maxReceiveCount the DLQ has it

Shutdown on SIGTERM or SIGINT, in phases:
1. stop receiving (a receive in flight is abandoned: SQS shows its messages again
   after the visibility timeout);
2. drain: the jobs in hand finish and are deleted;
3. close the services; exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time

from ..config import Settings, load_settings
from ..errors import ImgproxyError
from ..metrics import QUEUE_IGNORED, QUEUE_JOBS, QUEUE_VARIANTS
from ..stores.keyspace import key_space
from ..variants.fanout import targets_of, transient
from ..variants.services import Services, open_services
from .sqs import BadMessage, Message, SqsQueue, parse

log = logging.getLogger("imgproxy.consume")  # the name log filters already use

WAIT = 10  # seconds a receive long-polls


def consume(args: argparse.Namespace) -> int:
    settings = dataclasses.replace(load_settings(), memory_cache_mb=0)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.host)
    concurrency = max(1, args.concurrency or settings.concurrency)
    return asyncio.run(_consume(settings, args.queue_url, concurrency, args.idle_exit))


@dataclasses.dataclass
class Counts:
    done: int = 0
    poison: int = 0
    retried: int = 0
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0  # S3 events of no original (imgproxy's own keys among them)


async def _consume(settings: Settings, url: str, concurrency: int, idle_exit: float) -> int:
    async with open_services(settings) as services:
        queue = SqsQueue(await services.clients.sqs(), url)
        consumer = Consumer(services, queue, await queue.visibility_timeout())
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        log.info("consuming %s: %d jobs at a time, visibility timeout %ds", url, concurrency, consumer.visibility)
        await consumer.run(concurrency, idle_exit, stopping)
    print(json.dumps({"consumer": os.getpid(), **dataclasses.asdict(consumer.counts)}), flush=True)
    return 0


class Consumer:
    def __init__(self, services: Services, queue: SqsQueue, visibility: int) -> None:
        self.services = services
        self.queue = queue
        self.visibility = visibility
        self.counts = Counts()
        s = services.settings
        self.defaults = (s.warm_presets_list, s.warm_formats_list)
        self.space = key_space(s.originals, s.variants)

    async def run(self, concurrency: int, idle_exit: float, stopping: asyncio.Event) -> None:
        jobs: set[asyncio.Task[None]] = set()
        idle_since = time.monotonic()
        stop = asyncio.create_task(stopping.wait())
        try:
            while not stopping.is_set():
                if len(jobs) >= concurrency:
                    await asyncio.wait([stop, *jobs], return_when=asyncio.FIRST_COMPLETED)
                    continue
                wait = WAIT if not idle_exit else max(1, min(WAIT, int(idle_exit)))
                receive = asyncio.create_task(self.queue.receive(concurrency - len(jobs), wait))
                await asyncio.wait([stop, receive], return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():  # 1. stop receiving
                    receive.cancel()
                    break
                try:
                    messages = receive.result()
                except ImgproxyError as exc:
                    log.error("receiving failed (%s); trying again", exc.detail)
                    await asyncio.wait([stop], timeout=2)
                    continue
                for message in messages:
                    task = asyncio.create_task(self.handle(message))
                    jobs.add(task)
                    task.add_done_callback(jobs.discard)
                if messages or jobs:
                    idle_since = time.monotonic()
                elif idle_exit and time.monotonic() - idle_since >= idle_exit:
                    log.info("the queue has been empty for %gs: exiting", idle_exit)
                    break
        finally:
            stop.cancel()
            if jobs:  # 2. drain
                log.info("finishing %d job(s) in hand", len(jobs))
                await asyncio.gather(*jobs, return_exceptions=True)

    async def handle(self, message: Message) -> None:
        keeper = asyncio.create_task(self._keep_hidden(message))
        try:
            outcome = await self._run(message)
        except Exception:  # a bug, not the message's fault: counted, and the DLQ has it in the end
            log.exception("job failed unexpectedly (receive %d), left for redelivery: %.200r", message.receives,
                          message.body)
            outcome = "retried"
        finally:
            keeper.cancel()
        self._count(outcome)
        if outcome == "retried":
            # Back sooner than a full visibility timeout, later on each receive.
            with contextlib.suppress(ImgproxyError):
                await self.queue.extend(message, min(self.visibility, 2**message.receives))
            return
        try:
            await self.queue.delete(message)
        except ImgproxyError:
            pass  # it comes back; the job is idempotent and its variants are stored, so it is skipped

    async def _run(self, message: Message) -> str:
        try:
            parsed = parse(message.body, self.space, *self.defaults)
        except BadMessage as exc:
            log.error("poison message (receive %d), deleted: %s: %.200r", message.receives, exc, message.body)
            return "poison"
        for reason, n in parsed.ignored.items():
            QUEUE_IGNORED.labels(reason).inc(n)
        if parsed.ignored and not parsed.jobs and not parsed.bad:
            return "ignored"
        for why in parsed.bad:  # the message's other records still run
            log.error("poison record (receive %d), skipped: %s", message.receives, why)
        outcome = "poison" if parsed.bad else "done"
        for job in parsed.jobs:
            try:
                targets = targets_of(self.services.presets, job.presets, job.formats)
                log.info("rendering %s: %d variants (receive %d)", job.id, len(targets), message.receives)
                result = await self.services.variants.fan_out(job.id, targets)
            except ImgproxyError as exc:
                if transient(exc):
                    log.warning("job %s failed (%s %s), left for redelivery (receive %d)", job.id, exc.status,
                                exc.detail, message.receives)
                    return "retried"
                log.error("poison job %s (%s %s: %s), deleted", job.id, exc.status, exc.error, exc.detail)
                outcome = "poison"
                continue
            self.counts.rendered += len(result.rendered)
            self.counts.skipped += len(result.skipped)
            QUEUE_VARIANTS.labels("rendered").inc(len(result.rendered))
            QUEUE_VARIANTS.labels("skipped").inc(len(result.skipped))
            if result.transient:
                return "retried"  # a store write failed: run it again, the stored ones are skipped
            if result.failed:
                self.counts.failed += len(result.failed)
                QUEUE_VARIANTS.labels("failed").inc(len(result.failed))
                for key, error in result.failed.items():
                    log.error("variant %s cannot be rendered (%s %s: %s)", key, error.status, error.error,
                              error.detail)
        return outcome

    def _count(self, outcome: str) -> None:
        QUEUE_JOBS.labels(outcome).inc()
        setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)

    async def _keep_hidden(self, message: Message) -> None:
        """While the job runs, push its message's visibility out again before it ends."""
        every = max(0.5, self.visibility / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.queue.extend(message, self.visibility)
            except ImgproxyError:
                pass  # at worst another consumer takes it and finds the variants leased or stored

