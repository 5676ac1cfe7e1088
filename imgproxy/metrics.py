"""Prometheus metrics.

Under ``imgproxy serve`` every server process writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, so counters are the
machine's totals whichever process answers.
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

RENDERS = Counter("imgproxy_renders_total", "Variants rendered", ["preset", "format"])
REQUESTS = Counter("imgproxy_requests_total", "Variant requests by outcome", ["outcome"])
RENDER_SECONDS = Histogram(
    "imgproxy_render_seconds", "Time to render one variant", ["format"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORE_ERRORS = Counter("imgproxy_store_errors_total", "Variant store failures", ["operation"])
DISK_ERRORS = Counter("imgproxy_disk_errors_total",
                      "Writes refused by a full or unwritable folder: folder (spool, originals), "
                      "reason (full, unwritable)",
                      ["folder", "reason"])
LEASES = Counter(
    "imgproxy_leases_total",
    "Render leases: taken, taken_over (an expired S3 lease), waited (someone else held it), renewed",
    ["outcome"],
)

STORE_SECONDS = Histogram(
    "imgproxy_store_seconds", "Store call latency: store is local, s3 or http; operation fetch (an original), "
    "get, put or lease (a variant)", ["store", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
RENDERS_IN_FLIGHT = Gauge("imgproxy_renders_in_flight", "Renders running in a worker now",
                          multiprocess_mode="livesum")
RENDER_QUEUE = Gauge("imgproxy_render_queue", "Renders waiting for a free worker now",
                     multiprocess_mode="livesum")
ERRORS = Counter("imgproxy_errors_total", "Error responses by category (the JSON body's error)", ["category"])
SOURCE_BYTES = Counter("imgproxy_source_bytes_total", "Bytes of originals fetched for renders")
VARIANT_BYTES = Counter("imgproxy_variant_bytes_total", "Bytes of variants rendered", ["format"])

#: Bound once: the hit path increments these without a label lookup.
OUTCOME = {
    name: REQUESTS.labels(name)
    for name in ("memory", "store", "render", "joined", "not_modified", "redirect")
}

#: Every HTTP request's time, from RequestLog (so every endpoint), observed once when it ends.
REQUEST_SECONDS = Histogram(
    "imgproxy_request_seconds",
    "Request latency by outcome: memory, store, render, joined (the tier that served a variant, "
    "a 304 included), error (any error response, a fallback image too), other (the rest: /meta/, /o/, "
    "uploads, redirects, probes, /metrics)", ["outcome"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
             10, 30),
)
#: Bound once, like OUTCOME: a request observes its child without a label lookup.
LATENCY = {name: REQUEST_SECONDS.labels(name)
           for name in ("memory", "store", "render", "joined", "error", "other")}

# Server processes, summed over the live ones (prometheus_client's own process
# collector reads only the process answering, so it is off in multiprocess mode).
PROCESSES = Gauge("imgproxy_processes", "Server processes alive", multiprocess_mode="livesum")
PROCESS_RSS = Gauge("imgproxy_process_resident_memory_bytes",
                    "Resident memory of the server processes (Linux), summed", multiprocess_mode="livesum")
PROCESS_FDS = Gauge("imgproxy_process_open_fds", "Open file descriptors of the server processes, summed",
                    multiprocess_mode="livesum")
PROCESS_CPU = Counter("imgproxy_process_cpu_seconds",
                      "CPU time (user and system) of the server processes, summed over every one that ran")


class ProcessSampler:
    """Samples this server process's memory, descriptors and CPU into the
    metrics above every ``INTERVAL`` seconds (a timer on the event loop, never
    per request), when it starts and when it stops. Render worker processes
    are not in them."""

    INTERVAL = 5.0

    def __init__(self) -> None:
        self._cpu = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> ProcessSampler:
        PROCESSES.set(1)
        self._tick()
        return self

    def stop(self) -> None:
        """The last CPU seconds counted; the gauges of a process that ends cleanly go to 0
        (one that dies keeps its last values in the sums until the server restarts)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sample()
        for gauge in (PROCESSES, PROCESS_RSS, PROCESS_FDS):
            gauge.set(0)

    def _tick(self) -> None:
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(self.INTERVAL, self._tick)

    def sample(self) -> None:
        times = os.times()
        cpu = times.user + times.system
        PROCESS_CPU.inc(max(cpu - self._cpu, 0.0))
        self._cpu = cpu
        PROCESS_FDS.set(_count_fds())
        rss = _resident_bytes()
        if rss is not None:
            PROCESS_RSS.set(rss)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None  # not Linux


def _count_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # less the one listdir opened
        except OSError:
            continue
    return 0


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

#: ``imgproxy consume``: messages by outcome (done, poison, retried) and the variants its jobs made.
QUEUE_JOBS = Counter("imgproxy_queue_jobs_total",
                     "Queue messages handled: done, poison (deleted), retried (left for redelivery), "
                     "ignored (S3 events of no original, deleted)", ["outcome"])
QUEUE_VARIANTS = Counter("imgproxy_queue_variants_total",
                         "Variants of queue jobs: rendered, skipped (already stored), failed", ["outcome"])
QUEUE_IGNORED = Counter("imgproxy_queue_ignored_total",
                        "S3 event records that are no job: event (not ObjectCreated), outside (another bucket "
                        "or prefix), own (a key imgproxy writes itself: variants, leases, metadata), "
                        "test (s3:TestEvent)", ["reason"])
