"""Gallery traffic for imgproxy: ``locust -f loadtest/locustfile.py --host http://127.0.0.1:8080``.

Each request is one of (weights from the environment, loadtest/README.md):

    cold        GET a variant nobody asked for yet (a cold id): one render each
    bad         GET with a forged signature: an expected 403, not a failure
    head        HEAD a warm variant
    revalidate  GET a warm variant with If-None-Match: its ETag: an expected 304
    warm        GET a warm variant: Zipf over the warm ids, preset/format by the mix

Request names group the statistics by kind (and preset/format for GETs), so a
cold render's latency never hides inside a hit's. At the end, the origin's
``/metrics`` (LOADTEST_METRICS_URL, default <host>/metrics) is compared with its
value at the start and the hit/miss split printed; LOADTEST_RECORD names a JSON
file that receives what was sent, including every distinct cold variant.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from locust import FastHttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
import traffic

KEY = traffic.key()
TRAFFIC = traffic.Traffic.from_env(int(os.environ["LOADTEST_SEED"]) if os.environ.get("LOADTEST_SEED") else None)
KINDS = {
    "cold": traffic.env_float("LOADTEST_COLD_FRACTION", 0.05),
    "bad": traffic.env_float("LOADTEST_BAD_SIGNATURE_FRACTION", 0.01),
    "head": traffic.env_float("LOADTEST_HEAD_FRACTION", 0.05),
    "revalidate": traffic.env_float("LOADTEST_REVALIDATE_FRACTION", 0.10),
}
KINDS["warm"] = 1 - sum(KINDS.values())
if KINDS["warm"] < 0:
    raise SystemExit("LOADTEST_*_FRACTION add up to more than 1")
THINK = traffic.env_float("LOADTEST_THINK_SECONDS", 0)

SENT: dict[str, int] = {kind: 0 for kind in KINDS}
SENT["cold_exhausted"] = 0
ETAGS: dict[traffic.Variant, str] = {}
_metrics_at_start: dict[str, float] = {}


def _forge(url: str) -> str:
    return url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")


class GalleryVisitor(FastHttpUser):
    wait_time = between(0, THINK)

    @task
    def request(self) -> None:
        kind = TRAFFIC.rng.choices(list(KINDS), list(KINDS.values()))[0]
        if kind == "cold":
            variant = TRAFFIC.cold_variant()  # recorded before sending: an in-flight one counts too
            if variant is None:
                SENT["cold_exhausted"] += 1
                kind, variant = "warm", TRAFFIC.warm_variant()
        else:
            variant = TRAFFIC.warm_variant()
        SENT[kind] += 1
        url = traffic.url(variant, KEY)
        combo = f"{variant[0]}.{variant[2]}"
        if kind == "bad":
            self._expect("GET", _forge(url), 403, "GET bad signature (403)")
        elif kind == "head":
            self._expect("HEAD", url, 200, "HEAD warm")
        elif kind == "revalidate" and variant in ETAGS:
            self._expect("GET", url, 304, "GET revalidate (304)", headers={"If-None-Match": ETAGS[variant]})
        else:  # a revalidation of a variant whose ETag this process has not seen yet is a plain GET
            self._expect("GET", url, 200, f"GET {'cold' if kind == 'cold' else 'warm'} {combo}", variant=variant)

    def _expect(self, method: str, url: str, status: int, name: str,
                variant: traffic.Variant | None = None, headers: dict[str, str] | None = None) -> None:
        with self.client.request(method, url, name=name, headers=headers, catch_response=True) as r:
            if r.status_code != status:
                r.failure(f"expected {status}, got {r.status_code}: {(r.text or '')[:120]}")
                return
            if status == 200 and method == "GET" and not r.content:
                r.failure("empty body")
                return
            if variant is not None and r.headers.get("etag"):
                ETAGS[variant] = r.headers["etag"]
            r.success()


def _metrics_url(environment) -> str:  # type: ignore[no-untyped-def]
    return os.environ.get("LOADTEST_METRICS_URL") or (environment.host or "").rstrip("/") + "/metrics"


def _read_outcomes(url: str) -> dict[str, float]:
    """imgproxy_requests_total by outcome, plus imgproxy_renders_total, from /metrics."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
    except OSError as exc:
        print(f"loadtest: cannot read {url} ({exc}); no hit/miss split", file=sys.stderr)
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("imgproxy_requests_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("imgproxy_renders_total{"):
            out["renders"] = out.get("renders", 0) + float(line.rsplit(" ", 1)[1])
    return out


@events.test_start.add_listener
def _on_start(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    _metrics_at_start.update(_read_outcomes(_metrics_url(environment)))


@events.test_stop.add_listener
def _on_stop(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    end = _read_outcomes(_metrics_url(environment))
    delta = {k: end.get(k, 0) - _metrics_at_start.get(k, 0) for k in end}
    hits = sum(delta.get(k, 0) for k in ("memory", "store", "not_modified"))
    misses = sum(v for k, v in delta.items() if k in ("render", "joined"))
    if end:
        share = misses / (hits + misses) if hits + misses else 0
        print(f"loadtest: origin saw {hits:.0f} hits, {misses:.0f} misses ({share:.1%}), "
              f"{delta.get('renders', 0):.0f} renders; outcomes {({k: int(v) for k, v in delta.items() if v})}")
    record = os.environ.get("LOADTEST_RECORD")
    if record:
        Path(record).write_text(json.dumps({
            "sent": SENT,
            "cold_variants": sorted(set(TRAFFIC.cold_seen)),
            "origin": delta,
        }, indent=1) + "\n")
