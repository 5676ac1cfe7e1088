"""Store operations: ``imgproxy copy``, ``purge``, ``gc`` and ``du``.

Each command is a module with an async function over stores and a ``run(args)``
the CLI calls; :func:`add_commands` registers them on the CLI's subparsers
without importing them::

    copy.py     originals between stores, streamed and idempotent
    cleanup.py  purge (an original's variants, and its CDN copies with --cdn) and gc (variants no preset makes)
    usage.py    du: variant-store usage next to the capacity estimate
    common.py   what they share: clients, a bounded loop, sizes, reports, progress

They open stores from the tables of :mod:`imgproxy.variants.services` and share one
S3 client (:class:`imgproxy.stores.clients.Clients`); nothing here renders.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command that imports its module only when it runs: ``imgproxy serve`` must not
    import the stores and metrics before it sets up Prometheus' multi-process directory."""
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"{__name__}.{module}"), function)(args))
    return run


def add_commands(sub: Any) -> None:
    """Add copy, purge, gc and du to the CLI's subparsers."""
    p = sub.add_parser("copy", help="copy originals between stores (streamed, skips identical objects)")
    p.add_argument("src", help="file:///path, file://./path or s3://bucket/prefix")
    p.add_argument("dst", help="file:///path, file://./path or s3://bucket/prefix")
    p.add_argument("--prefix", default="", help="only keys starting with this, e.g. gallery/42/")
    p.add_argument("--concurrency", type=int, default=8, help="objects copied at once")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_lazy("copy", "run"))

    p = sub.add_parser("purge", help="delete an original's variants (every preset, digest and format)")
    p.add_argument("ids", nargs="+", help="original ids, without extension: gallery/42/photo")
    p.add_argument("--preset", help="only this preset's variants (any name, current or not)")
    p.add_argument("--cdn", action="store_true",
                   help="then purge the CDNs of IMGPROXY_CDN_PURGE by the ids' surrogate keys (every URL of each id)")
    p.add_argument("--json", action="store_true", help="print what was deleted as JSON")
    p.set_defaults(func=_lazy("cleanup", "run_purge"))

    g = sub.add_parser("gc", help="find (and with --apply delete) variants no current preset can produce")
    g.add_argument("--apply", action="store_true", help="delete them; without it, only list them")
    g.add_argument("--summary", action="store_true", help="one line per stale folder, not per variant")
    g.add_argument("--concurrency", type=int, default=16, help="deletes at once")
    g.add_argument("--json", action="store_true", help="print the findings as JSON")
    g.set_defaults(func=_lazy("cleanup", "run_gc"))

    p = sub.add_parser("du", help="variant-store usage by preset and format, with the capacity estimate")
    p.add_argument("--originals", type=int, help="number of originals for the estimate (default: list the store)")
    p.add_argument("--formats", help="formats in the plan, comma-separated (default: all)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_lazy("usage", "run"))
