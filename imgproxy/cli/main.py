"""The ``imgproxy`` command: serve, sign, warm, consume, put, info, doctor; the store commands (:mod:`.ops`).

``serve`` takes every setting as an option (``--max-source-bytes`` and so on),
derived from :class:`imgproxy.config.Settings`; nothing is declared twice.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .. import __version__
from ..config import ConfigError, Settings, load_settings, to_environ
from ..errors import ImgproxyError
from ..formats import AUTO, FORMATS

log = logging.getLogger("imgproxy")


def _settings_options(parser: argparse.ArgumentParser) -> None:
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.metadata["secret"]:
            continue  # keys only from the environment or the file, never argv (ps shows it)
        kind = type(f.default)
        parser.add_argument(flag, dest=f.name, default=None, help=f.metadata["description"],
                            type=str if kind in (bool, tuple) else kind)


def _load(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..keys import resolve_keys
    from ..presets import load_presets
    from ..stores import file_path

    settings = _load(args)
    load_presets(settings.presets)  # fail here, once, not in every worker
    keys = resolve_keys(settings)
    if settings.env == "development" and settings.originals == Settings.originals:
        from ..web.demo import SAMPLES, seed

        root = Path(file_path(settings.originals))
        if not root.exists() or not any(root.iterdir()):
            seed(root)
            log.warning("seeded %s with sample originals", root)
        if (root / "demo").is_dir():
            _print_demo_urls(keys[0], SAMPLES, f"http://{settings.host}:{settings.port}")
    env = to_environ(settings)
    env["IMGPROXY_KEYS"] = ",".join(keys)
    os.environ.update(env)
    # One metrics directory per server: every worker writes to it, /metrics sums it.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="imgproxy-metrics-"))
    from ..web.allow import networks
    from ..web.logs import logging_config  # imports the metrics: only once their directory is set

    with contextlib.ExitStack() as stack:
        try:
            _start_render_pool(settings, stack)
        except RuntimeError as exc:
            print(f"imgproxy: {exc}", file=sys.stderr)
            return 1
        uvicorn.run(
            "imgproxy.web.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=logging_config(settings),
            access_log=False,  # ours is imgproxy.web.logs.RequestLog
            date_header=False,  # RequestLog sets Date, from the clock of Last-Modified
            server_header=False,
            # X-Forwarded-For only from IMGPROXY_TRUSTED_PROXIES (uvicorn's own default trusts loopback).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=[str(network) for network in networks(settings.trusted_proxies)] or None,
            timeout_graceful_shutdown=10,
            # Limits on what a client may hold (web/protocol.py): header bytes
            # (431) and time, idle keep-alive, connections plus requests (503).
            http="imgproxy.web.protocol:BoundedHttpTools",
            h11_max_incomplete_event_size=settings.max_header_bytes,
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=settings.keep_alive_timeout,
        )
    return 0


def _start_render_pool(settings: Settings, stack: contextlib.ExitStack) -> None:
    """With several server processes in process mode, one render pool for all
    of them (imgproxy.workers.pool), started before uvicorn forks them: a pinned
    keep-alive connection then cannot leave another process's workers idle."""
    if settings.render_mode != "process" or settings.workers == 1:
        return
    from ..workers.pool import POOL_ENV, PoolKeeper

    # One worker per core for the machine (not per server process), and every process's queue.
    pool = stack.enter_context(PoolKeeper(settings.concurrency, settings.workers * settings.render_queue,
                                          settings.worker_memory_mb, settings.worker_cpu_seconds,
                                          settings.vips_concurrency))
    os.environ[POOL_ENV] = str(pool.folder)  # for the server processes uvicorn starts


def _print_demo_urls(key: str, ids: Sequence[str], base_url: str) -> None:
    from ..urls import variant_url

    print("Demo URLs (signed with the development key):")
    for id, preset, fmt in zip(ids, ("thumbnail", "web", "thumb-square"), ("webp", "avif", "jpg")):
        print("  " + variant_url(key, preset, id, fmt, base_url))


def cmd_sign(args: argparse.Namespace) -> int:
    import time

    from ..keys import resolve_keys
    from ..presets import load_presets
    from ..urls import meta_url, original_url, variant_url

    settings = load_settings()
    if args.meta or args.original:
        if args.preset or args.id or (args.meta and args.original):
            print("imgproxy: sign takes PRESET ID, --meta ID or --original ID", file=sys.stderr)
            return 2
        key = resolve_keys(settings)[0]
        if args.meta:
            print(meta_url(key, args.meta, args.base_url))
        else:
            expires = int(time.time()) + args.expires
            print(original_url(key, args.original, expires, args.inline, args.base_url))
        return 0
    if not args.preset or not args.id:
        print("imgproxy: sign takes PRESET ID, --meta ID or --original ID", file=sys.stderr)
        return 2
    presets = load_presets(settings.presets)
    if args.preset not in presets:
        print(f"imgproxy: unknown preset {args.preset!r}; known: {', '.join(presets)}", file=sys.stderr)
        return 2
    from ..modifiers import check_modifiers, parse_focus
    from ..srcset import srcset

    preset, key = presets[args.preset], resolve_keys(settings)[0]
    focus = parse_focus(args.focus) if args.focus else None
    check_modifiers(args.width, focus, preset)
    if args.unsigned and (not preset.public or focus is not None):
        print(f"imgproxy: --unsigned needs a public preset and no --focus ({args.preset!r} is "
              f"{'public' if preset.public else 'private'})", file=sys.stderr)
        return 2
    signed = not args.unsigned
    if args.srcset:
        if not preset.widths:
            print(f"imgproxy: preset {args.preset!r} has no widths", file=sys.stderr)
            return 2
        print(srcset(key, args.preset, args.id, args.format, preset.widths, args.base_url, focus=focus,
                     signed=signed))
        return 0
    print(variant_url(key, args.preset, args.id, args.format, args.base_url, width=args.width, focus=focus,
                      signed=signed))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import pyvips

    from ..presets import load_presets

    settings = load_settings()
    if args.id:
        return _print_meta(settings, args.id)
    print(f"imgproxy {__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}")
    print("settings (IMGPROXY_<NAME>):")
    for f in fields(Settings):
        print(f"  {f.name:20} = {settings.describe()[f.name]:28} {f.metadata['description']}")
    print("presets:")
    for p in load_presets(settings.presets).values():
        print(f"  {p.name:14} {p.width}x{p.height} {p.fit:6} digest {p.digest}")
    from ..render import configure
    from ..render.capabilities import inputs, outputs

    configure()
    print("inputs (tried):")
    for name, answer in inputs().items():
        print(f"  {name:8} {answer}")
    print("outputs (tried):")
    for name, answer in outputs().items():
        print(f"  {name:8} {answer}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return doctor(load_settings())


def _print_meta(settings: Settings, id: str) -> int:
    """The metadata document of ``id``, as ``GET /meta/<id>.json`` serves it (and stored like it)."""
    import json

    import anyio

    from ..urls import check_id
    from ..variants.services import open_services

    async def work() -> bytes:
        async with open_services(settings) as services:
            _, blob, _ = await services.variants.describe(check_id(id), settings.meta_gps)
            return blob.body

    print(json.dumps(json.loads(anyio.run(work)), indent=2, ensure_ascii=False))
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    from ..batch.warm import warm

    return warm(args)


def cmd_consume(args: argparse.Namespace) -> int:
    from ..batch.consume import consume

    return consume(args)


def cmd_put(args: argparse.Namespace) -> int:
    from .put import put

    return put(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgproxy", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (uvicorn)")
    _settings_options(serve)
    serve.set_defaults(func=cmd_serve)

    sign = sub.add_parser("sign", help="print a signed variant, metadata or download URL")
    sign.add_argument("preset", nargs="?")
    sign.add_argument("id", nargs="?", help="original id, without extension: gallery/42/photo")
    sign.add_argument("--meta", metavar="ID", help="a /meta/<id>.json URL instead")
    sign.add_argument("--original", metavar="ID", help="a /o/<id> download link instead")
    sign.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                      help="how long the download link lasts (default 3600)")
    sign.add_argument("--inline", action="store_true", help="download link shown in the browser, not saved")
    sign.add_argument("--format", default="webp", choices=(*FORMATS, AUTO))
    sign.add_argument("--base-url", default="", help="e.g. https://img.example.com")
    sign.add_argument("--width", type=int, help="a width from the preset's widths")
    sign.add_argument("--focus", help="focal point x,y as fractions 0..1, e.g. 0.8,0.3 (fit = cover)")
    sign.add_argument("--srcset", action="store_true", help="print a srcset attribute of every width")
    sign.add_argument("--unsigned", action="store_true", help="no ?s= (a public preset's URL)")
    sign.set_defaults(func=cmd_sign)

    warm = sub.add_parser("warm", help="pre-render variants: here with fan-out jobs, through a server, or via SQS")
    warm.add_argument("ids", nargs="*", help="original ids; '-' reads more from stdin")
    warm.add_argument("--ids-file", metavar="FILE", help="ids, one a line; '-' is stdin")
    warm.add_argument("--prefix", metavar="P", help="every original under this prefix of the originals store")
    warm.add_argument("--presets", help="comma-separated (default: IMGPROXY_WARM_PRESETS)")
    warm.add_argument("--formats", help="comma-separated (default: IMGPROXY_WARM_FORMATS)")
    warm.add_argument("--concurrency", type=int, default=0, help="jobs in flight (default: 2 per render slot)")
    mode = warm.add_mutually_exclusive_group()
    mode.add_argument("--via", metavar="URL", help="request signed URLs from this server or CDN instead")
    mode.add_argument("--enqueue", metavar="QUEUE_URL", help="send one job per original to this SQS queue instead")
    warm.add_argument("--json", action="store_true", help="print the summary as JSON")
    warm.set_defaults(func=cmd_warm)

    consume = sub.add_parser("consume", help="render the fan-out jobs of an SQS queue (job messages, S3 events)")
    consume.add_argument("queue_url", metavar="QUEUE_URL")
    consume.add_argument("--concurrency", type=int, default=0, help="jobs in flight (default: one per render slot)")
    consume.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS",
                         help="exit once the queue has been empty this long (default: never)")
    consume.add_argument("--metrics-port", type=int, default=0, metavar="P",
                         help="serve Prometheus metrics on IMGPROXY_HOST:P")
    consume.set_defaults(func=cmd_consume)

    put = sub.add_parser("put", help="upload originals: validated, stored, rendered (here or --via a server)")
    put.add_argument("files", nargs="+", metavar="FILE")
    ids = put.add_mutually_exclusive_group()
    ids.add_argument("--id", help="the id of the one file (default: its name without extension)")
    ids.add_argument("--prefix", help="ids are this plus each file's name without extension, e.g. gallery/42/")
    put.add_argument("--render", help="presets to render now, comma-separated, 'none' for none "
                                      "(default: IMGPROXY_INGEST_RENDER)")
    put.add_argument("--replace", action="store_true", help="store other bytes under a new id (docs/UPLOADS.md)")
    put.add_argument("--via", metavar="URL", help="upload through this server instead of straight into the store")
    put.add_argument("--token-env", metavar="NAME", help="variable holding the token (default: IMGPROXY_INGEST_TOKENS)")
    put.add_argument("--base-url", default="", help="base of the variant URLs printed (local mode)")
    put.add_argument("--json", action="store_true", help="one JSON object per file")
    put.set_defaults(func=cmd_put)

    info = sub.add_parser("info", help="settings, presets, libvips version, formats; with ID, its metadata")
    info.add_argument("id", nargs="?", help="print this original's metadata document instead")
    info.set_defaults(func=cmd_info)

    doctor = sub.add_parser("doctor", help="check settings, keys, stores, rendering and formats; exit 1 on a problem")
    doctor.set_defaults(func=cmd_doctor)

    from .ops import add_commands  # copy, purge, gc, du

    add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pyvips", "httpx", "aiobotocore.credentials"):  # a line per request / per client
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"imgproxy: invalid setting: {exc}", file=sys.stderr)
        return 2
    except (ValueError, ImgproxyError) as exc:  # PresetError, a bad id given to sign
        print(f"imgproxy: {exc}", file=sys.stderr)
        return 2
