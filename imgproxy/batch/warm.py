"""``imgproxy warm``: pre-render variants of many originals.

Three ways, one set of ids (arguments, ``--ids-file FILE|-``, ``--prefix P``)
and one set of targets (``--presets`` x ``--formats``, default
``IMGPROXY_WARM_PRESETS`` x ``IMGPROXY_WARM_FORMATS``):

- default: render here, straight into the variant store, one fan-out job per
  original (:meth:`VariantService.fan_out`: one decode, every missing variant,
  each under the same lease live requests take). No server needed; safe beside
  servers, other warm-ups and consumers. Existing variants are skipped, so a
  re-run resumes.
- ``--via URL``: signed requests through a server or CDN, one per variant.
- ``--enqueue QUEUE_URL``: one job message per original to SQS, for
  ``imgproxy consume`` on any number of machines.

Failures follow the playbook: a 4xx (undecodable, too large, unsupported,
missing) is reported once and never retried; a 5xx (worker crash or timeout,
store or origin down) re-runs the whole job, up to :data:`ATTEMPTS` times.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import httpx

from ..config import Settings, load_settings
from ..errors import ImgproxyError, Unsupported
from ..keys import resolve_keys
from ..presets import Preset, load_presets
from ..stores import OriginalStore, id_of
from ..stores.clients import Clients
from ..stores.keyspace import key_space
from ..urls import check_id, variant_url
from ..variants.fanout import Target, targets_of, transient
from ..variants.services import ORIGINAL_STORES, Services, open_services, open_store
from .progress import Progress, Tally, each, print_summary
from .sqs import Job, SqsQueue

ATTEMPTS = 3  # runs of one job when it fails for a reason that is not the original's
BACKOFF = 1.0  # seconds before the second run, doubled for each further one


class UsageError(ValueError):
    """Bad ids, presets or formats: exit 2 before anything runs."""


def warm(args: argparse.Namespace) -> int:
    settings = load_settings()
    # A batch process: no memory tier (nothing is served from it), no surprises.
    settings = dataclasses.replace(settings, memory_cache_mb=0)
    try:
        given = _given_ids(args)
        run = _send if args.enqueue or args.via else _warm
        return asyncio.run(run(args, settings, given))
    except UsageError as exc:
        print(f"imgproxy warm: {exc}", file=sys.stderr)
        return 2


async def _warm(args: argparse.Namespace, settings: Settings, given: list[str]) -> int:
    async with open_services(settings) as services:
        *_, targets = _targets(args, settings, services.presets)
        ids = await _ids(args, settings, services.originals, given)
        tally = Tally(len(ids), len(ids) * len(targets))
        with Progress("warm", len(ids), "originals") as progress:

            async def one(id: str) -> None:
                await warm_one(services, id, targets, tally)
                progress.advance(tally.figures())

            await each(ids, one, _concurrency(args, settings))
        print_summary(tally, args.json)
        return 1 if tally.failed else 0


async def _send(args: argparse.Namespace, settings: Settings, given: list[str]) -> int:
    """``--via`` and ``--enqueue`` render nothing here: no variant store, no render workers; the
    originals store only to list ``--prefix``."""
    names, formats, targets = _targets(args, settings, load_presets(settings.presets))
    clients = Clients(settings)
    try:
        if args.prefix is not None:
            originals: OriginalStore = await open_store(ORIGINAL_STORES, settings.originals, settings, clients)
            try:
                ids = await _ids(args, settings, originals, given)
            finally:
                await originals.aclose()
        else:
            ids = await _ids(args, settings, None, given)
        if args.enqueue:
            return await _enqueue(await clients.sqs(), args.enqueue, ids, names, formats, args.json)
        return await _via(resolve_keys(settings)[0], args.via, ids, targets, _concurrency(args, settings),
                          args.json)
    finally:
        await clients.aclose()


def _targets(args: argparse.Namespace, settings: Settings,
             presets: Mapping[str, Preset]) -> tuple[tuple[str, ...], tuple[str, ...], list[Target]]:
    names = _names(args.presets, settings.warm_presets_list)
    formats = _names(args.formats, settings.warm_formats_list)
    try:
        return names, formats, targets_of(presets, names, formats)
    except ImgproxyError as exc:
        raise UsageError(exc.detail) from None


def _concurrency(args: argparse.Namespace, settings: Settings) -> int:
    return max(1, args.concurrency or 2 * settings.concurrency)


def _names(option: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in option.split(",") if n.strip()) if option else default
    if not names:
        raise UsageError("no presets or formats given")
    return names


def _given_ids(args: argparse.Namespace) -> list[str]:
    """Ids from the arguments, ``--ids-file FILE|-``, or stdin when piped in and nothing else is given."""
    ids = [i for i in args.ids if i != "-"]
    if args.ids_file not in (None, "-"):
        with open(args.ids_file) as f:
            ids += _lines(f)
    elif args.ids_file == "-" or "-" in args.ids:
        ids += _lines(sys.stdin)
    elif not ids and args.prefix is None and not sys.stdin.isatty():
        ids = _lines(sys.stdin)
    return ids


def _lines(f: Iterable[str]) -> list[str]:
    return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


async def _ids(args: argparse.Namespace, settings: Settings, originals: OriginalStore | None,
               given: list[str]) -> list[str]:
    ids = list(given)
    if args.prefix is not None and originals is not None:
        ids += [id async for id in _listed(settings, originals, args.prefix)]
    if not ids:
        raise UsageError("no ids: give them as arguments, with --ids-file FILE|- or --prefix P")
    try:
        return list(dict.fromkeys(check_id(id) for id in ids))
    except ImgproxyError as exc:
        raise UsageError(exc.detail) from None


async def _listed(settings: Settings, originals: OriginalStore, prefix: str) -> AsyncIterator[str]:
    s = settings
    space = key_space(s.originals, s.variants)
    own = 0
    try:
        async for key in originals.list_keys(prefix):
            if space.own(key):  # the variant store sharing the bucket: never warm variants of variants
                own += 1
                continue
            yield id_of(key)
    except Unsupported as exc:
        raise UsageError(f"cannot list {s.originals}: {exc.detail}; "
                         "give the ids as arguments or with --ids-file") from None
    if own:
        print(f"imgproxy warm: ignored {own} keys under {s.originals} that imgproxy wrote itself "
              f"(the variant store {s.variants})", file=sys.stderr)


async def warm_one(services: Services, id: str, targets: Sequence[Target], tally: Tally) -> None:
    """One original's job; a transient failure runs it again (written variants are skipped then)."""
    rendered: set[str] = set()
    skipped: set[str] = set()
    failed: dict[str, ImgproxyError] = {}
    whole: ImgproxyError | None = None  # the job failed as a whole: every variant still to do
    for attempt in range(ATTEMPTS):
        whole = None
        try:
            result = await services.variants.fan_out(id, targets)
        except ImgproxyError as exc:
            whole = exc
            failed = {id: exc}
        else:
            rendered.update(result.rendered)
            skipped.update(k for k in result.skipped if k not in rendered)
            failed = result.failed
        if not failed or not any(transient(e) for e in failed.values()) or attempt == ATTEMPTS - 1:
            break
        tally.retries += 1
        await asyncio.sleep(BACKOFF * 2**attempt)
    if whole is not None:  # reported once, for the original, counted for each variant not made
        failed = {f"{id}#{i}": whole for i in range(len(targets) - len(rendered) - len(skipped))}
    tally.done(id, len(rendered), len(skipped), failed)


async def _enqueue(sqs: Any, url: str, ids: Sequence[str], presets: Sequence[str],
                   formats: Sequence[str], as_json: bool) -> int:
    queue = SqsQueue(sqs, url)
    started = time.monotonic()
    await queue.send([Job(id, tuple(presets), tuple(formats)).message() for id in ids])
    took = time.monotonic() - started
    summary = {"enqueued": len(ids), "variants": len(ids) * len(presets) * len(formats), "queue": url,
               "seconds": round(took, 2)}
    print(json.dumps(summary) if as_json else
          f"enqueued {len(ids)} jobs ({summary['variants']} variants) to {url} in {took:.2f}s")
    return 0


async def _via(key: str, base_url: str, ids: Sequence[str], targets: Sequence[Target],
               concurrency: int, as_json: bool) -> int:
    """A signed request per variant through a server or CDN."""
    urls = [variant_url(key, p.name, i, f, base_url) for i in ids for p, f in targets]
    started = time.perf_counter()
    counts = await _request_all(urls, concurrency)
    took = time.perf_counter() - started
    ok = sum(v for k, v in counts.items() if k in ("memory", "store", "render"))
    if as_json:
        print(json.dumps({"originals": len(ids), "variants": len(urls), "ok": ok, "outcomes": counts,
                          "seconds": round(took, 2), "originals_per_s": round(len(ids) / took, 2),
                          "variants_per_s": round(len(urls) / took, 2)}))
    else:
        print(f"warmed {len(ids)} originals, {len(urls)} variants in {took:.2f}s "
              f"({len(ids) / took:.1f} originals/s): {via_outcomes(counts)}")
    return 0 if ok == len(urls) else 1


def via_outcomes(counts: dict[str, int]) -> str:
    """``{"render": 4, "store": 2, "404": 1}`` as a person reads it; each failed URL
    was already printed on its own line."""
    served = [(counts.get(tier, 0), words) for tier, words in
              (("render", "rendered"), ("store", "already stored"), ("memory", "from memory"))]
    failed = {k: v for k, v in counts.items() if k not in ("render", "store", "memory")}
    text = ", ".join(f"{n} {words}" for n, words in served)
    text += f", {sum(failed.values())} failed"
    if failed:
        text += " (" + ", ".join(f"{n} × {why}" for why, n in sorted(failed.items())) + ")"
    return text


async def _request_all(urls: list[str], concurrency: int) -> dict[str, int]:
    counts: dict[str, int] = {}

    async def one(url: str) -> None:
        try:
            r = await client.get(url)
            outcome = r.headers.get("x-imgproxy-tier", str(r.status_code))
            if r.status_code >= 400:
                print(f"{r.status_code} {url}: {r.text[:200]}", file=sys.stderr)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            print(f"error {url}: {exc}", file=sys.stderr)
        counts[outcome] = counts.get(outcome, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await each(urls, one, concurrency)
    return counts
