"""Prometheus metrics.

Under ``imgproxy serve`` every server process writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, so counters are the
machine's totals whichever process answers.
"""

from __future__ import annotations

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
