"""The ``imgproxy`` command: serve, sign, warm, info.

``serve`` takes every setting as an option (``--max-source-bytes`` and so on),
derived from :class:`imgproxy.config.Settings`; nothing is declared twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from . import __version__
from .config import ConfigError, Settings, load_settings, to_environ
from .errors import ImgproxyError
from .formats import FORMATS

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

    from .keys import resolve_keys
    from .presets import load_presets
    from .stores import file_path

    settings = _load(args)
    load_presets(settings.presets)  # fail here, once, not in every worker
    keys = resolve_keys(settings)
    if settings.env == "development" and settings.originals == Settings.originals:
        from .demo import SAMPLES, seed

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
    uvicorn.run(
        "imgproxy.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _print_demo_urls(key: str, ids: Sequence[str], base_url: str) -> None:
    from .urls import variant_url

    print("Demo URLs (signed with the development key):")
    for id, preset, fmt in zip(ids, ("thumbnail", "web", "thumb-square"), ("webp", "avif", "jpg")):
        print("  " + variant_url(key, preset, id, fmt, base_url))


def cmd_sign(args: argparse.Namespace) -> int:
    from .keys import resolve_keys
    from .presets import load_presets
    from .urls import variant_url

    settings = load_settings()
    presets = load_presets(settings.presets)
    if args.preset not in presets:
        print(f"imgproxy: unknown preset {args.preset!r}; known: {', '.join(presets)}", file=sys.stderr)
        return 2
    from .modifiers import check_modifiers, parse_focus
    from .srcset import srcset

    preset, key = presets[args.preset], resolve_keys(settings)[0]
    focus = parse_focus(args.focus) if args.focus else None
    check_modifiers(args.width, focus, preset)
    if args.srcset:
        if not preset.widths:
            print(f"imgproxy: preset {args.preset!r} has no widths", file=sys.stderr)
            return 2
        print(srcset(key, args.preset, args.id, args.format, preset.widths, args.base_url, focus=focus))
        return 0
    print(variant_url(key, args.preset, args.id, args.format, args.base_url, width=args.width, focus=focus))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import pyvips

    from .presets import load_presets

    settings = load_settings()
    print(f"imgproxy {__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}")
    print("settings (IMGPROXY_<NAME>):")
    for f in fields(Settings):
        print(f"  {f.name:20} = {settings.describe()[f.name]:28} {f.metadata['description']}")
    print("presets:")
    for p in load_presets(settings.presets).values():
        print(f"  {p.name:14} {p.width}x{p.height} {p.fit:6} digest {p.digest}")
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    from .warm import warm

    return warm(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgproxy", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (uvicorn)")
    _settings_options(serve)
    serve.set_defaults(func=cmd_serve)

    sign = sub.add_parser("sign", help="print a signed variant URL")
    sign.add_argument("preset")
    sign.add_argument("id", help="original id, without extension: gallery/42/photo")
    sign.add_argument("--format", default="webp", choices=FORMATS)
    sign.add_argument("--base-url", default="", help="e.g. https://img.example.com")
    sign.add_argument("--width", type=int, help="a width from the preset's widths")
    sign.add_argument("--focus", help="focal point x,y as fractions 0..1, e.g. 0.8,0.3 (fit = cover)")
    sign.add_argument("--srcset", action="store_true", help="print a srcset attribute of every width")
    sign.set_defaults(func=cmd_sign)

    warm = sub.add_parser("warm", help="pre-render variants through a running server")
    warm.add_argument("ids", nargs="*", help="original ids; '-' or none reads them from stdin")
    warm.add_argument("--preset", action="append", required=True, help="repeat for several")
    warm.add_argument("--format", action="append", choices=FORMATS)
    warm.add_argument("--base-url", default="http://127.0.0.1:8080")
    warm.add_argument("--concurrency", type=int, default=4)
    warm.set_defaults(func=cmd_warm)

    info = sub.add_parser("info", help="print settings, presets and the libvips version")
    info.set_defaults(func=cmd_info)
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
