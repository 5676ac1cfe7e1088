"""Settings, declared once.

Every setting is a field of :class:`Settings` with a default and a one-line
description. From that one declaration come:

- the TOML keys of ``config/imgproxy.toml`` (another file via ``IMGPROXY_CONFIG``),
- the environment variables ``IMGPROXY_<NAME>``, which override the file,
- the ``imgproxy serve --<name>`` options, which override both.

Values are parsed and validated once, at start-up; a bad one raises
:class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cdn import PURGERS
from .formats import FORMATS, INPUT_FORMATS

ENV_PREFIX = "IMGPROXY_"
DEFAULT_CONFIG_FILE = "config/imgproxy.toml"


class ConfigError(ValueError):
    """An invalid setting; the message names it as ``IMGPROXY_<NAME>``."""


def setting(default: Any, description: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret,
                 metadata={"description": description, "secret": secret})


@dataclass(frozen=True)
class Settings:
    env: str = setting("development", "'development' or 'production'; production requires keys")
    keys: tuple[str, ...] = setting((), "comma-separated signing keys; the first signs, all verify", secret=True)
    dev_key_file: str = setting("data/dev-key", "where development mode keeps its generated key")
    originals: str = setting("file://./data/originals", "originals store: file:///path, s3://bucket/prefix or https://host/prefix/ (comma-separated for several HTTP prefixes)")
    variants: str = setting("file://./data/variants", "variant store: file:///path or s3://bucket/prefix")
    presets: str = setting("config/presets.toml", "presets file")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "port to listen on")
    workers: int = setting(1, "server processes")
    log_level: str = setting("info", "uvicorn log level")
    log_format: str = setting("auto", "'json' (one object a line), 'text', or 'auto': text in development, JSON in production")
    access_log: bool = setting(True, "one log line per request: method, path without the query, status, tier, bytes, ms, request id, error category, client address (see trusted_proxies), User-Agent")
    not_found_max_age: int = setting(10, "seconds a 404 (missing original, unknown preset or path) may be cached")
    max_header_bytes: int = setting(32768, "most bytes a request's line and headers may have (431 and closed above)")
    header_timeout: float = setting(10.0, "seconds a client has to send a request's headers, from connecting or from its previous response (then closed)")
    body_timeout: float = setting(60.0, "seconds a client has to send a request's body, from the end of its headers (408 and closed above)")
    keep_alive_timeout: int = setting(5, "seconds an idle keep-alive connection stays open")
    max_connections: int = setting(2048, "connections plus requests in flight per server process; requests beyond it get 503")
    memory_cache_mb: int = setting(256, "memory tier size per process, in MiB of variant bytes (0 disables)")
    render_threads: int = setting(0, "concurrent renders on the machine, however many server processes there are (in process mode one pool of this many workers serves them all; in thread mode each process gets its share); 0 means one per CPU core this process may run on")
    render_queue: int = setting(64, "renders allowed to wait for a slot before new ones get 503")
    render_mode: str = setting("process", "'process' renders in capped, isolated worker processes; 'thread' in this process's thread pool")
    vips_concurrency: int = setting(1, "libvips threads per render; parallelism comes from concurrent renders")
    avif_effort: int = setting(2, "AVIF encoder effort (0-9) of on-demand renders: a miss waits for it")
    avif_eager_effort: int = setting(4, "AVIF encoder effort (0-9) of eager renders (fan-out jobs), which nobody waits for")
    max_source_bytes: int = setting(64 * 1024 * 1024, "largest original accepted, in bytes (413 above)")
    max_source_pixels: int = setting(100_000_000, "largest original accepted, in pixels, read from the header before decoding (413 above)")
    max_source_side: int = setting(65_535, "largest original accepted, in pixels along either side, read from the header before decoding (413 above)")
    max_frames: int = setting(256, "most animation frames or pages decoded (413 above)")
    max_output_pixels: int = setting(50_000_000, "largest variant rendered, in pixels (413 above)")
    max_svg_elements: int = setting(100_000, "most elements an SVG may have, counted before librsvg parses it (413 above)")
    input_formats: tuple[str, ...] = setting((), f"comma-separated input formats accepted, judged by their bytes ({', '.join(INPUT_FORMATS)}); empty means all")
    auto_format: bool = setting(True, "serve /v/<preset>/<id>.auto, picking AVIF, WebP, JPEG or PNG by Accept; off makes .auto a 400")
    fallback: str = setting("", "id of an original served by /v/, in the requested preset, width and format, in place of a missing (404), unreadable (415) or undecodable (422) one; rendered and stored once per variant like any original's; a fallback that is not there or does not decode stops start-up; empty means none")
    fallback_status: str = setting("keep", "status of a fallback image: 'keep' (the 404, 415 or 422 it stands in for) or '200'; either way with Cache-Control max-age=not_found_max_age and X-Imgproxy-Fallback: 1")
    cors_origins: tuple[str, ...] = setting((), "comma-separated origins (https://app.example.com) whose pages may read /v/, /meta/ and /o/ responses from script: the request's Origin echoed in Access-Control-Allow-Origin when listed, with Vary: Origin; '*' for any origin (no Vary); empty sends no CORS headers")
    render_timeout: float = setting(30.0, "seconds one render may take (504 above); a fan-out job, this for each variant it makes")
    download_timeout: float = setting(15.0, "seconds fetching one original may take (504 above)")
    originals_budget_mb: int = setting(1024, "MiB that fetched originals (S3, HTTP) and uploads may hold at once per process, downloading or waiting for a render (503 with Retry-After above); at least max_source_bytes")
    spool_dir: str = setting("", "folder where fetched originals and uploads wait, streamed in as they arrive; empty means /dev/shm if writable and at least originals_budget_mb large (Docker's 64 MiB is not), else the temp folder; one smaller than the budget is named in a warning at start-up, and when full answers 503 (507 to an upload)")
    worker_memory_mb: int = setting(2048, "address-space cap (RLIMIT_AS) of each render worker process, in MiB (process mode)")
    worker_cpu_seconds: int = setting(300, "CPU seconds one render may use in a worker process (SIGXCPU, 422 and a new worker above)")
    s3_endpoint_url: str = setting("", "S3-compatible endpoint (MinIO, R2, Ceph); empty means AWS")
    s3_lease_seconds: float = setting(60.0, "how long a render lease on a shared S3 variant bucket lasts; must exceed download_timeout + render_timeout")
    s3_timeout: float = setting(5.0, "seconds to connect to S3 and to wait for each response (then 503 with Retry-After)")
    s3_max_attempts: int = setting(3, "attempts per S3 call, with backoff on throttling, 5xx and dropped connections")
    s3_max_connections: int = setting(64, "connections in each process's S3 connection pool")
    metrics_allow: tuple[str, ...] = setting((), "comma-separated networks (CIDR) that may read /metrics and /healthz; others get 404; empty allows every client")
    trusted_proxies: tuple[str, ...] = setting((), "comma-separated networks (CIDR) of proxies whose X-Forwarded-For (and X-Forwarded-Proto) is believed: for a request from one, the client (access log, metrics_allow) is the nearest X-Forwarded-For address that is not itself in them; from any other peer the header is ignored; empty trusts none (the client is the peer)")
    http_allow_private: bool = setting(False, "allow HTTP origins on loopback and private (RFC 1918, ULA) addresses, for development; link-local and cloud metadata addresses are always refused")
    warm_presets: str = setting("thumbnail,preview,web", "comma-separated presets that imgproxy warm and imgproxy consume render when a job names none (S3 upload events never do)")
    warm_formats: str = setting("webp,avif", "comma-separated formats that imgproxy warm and imgproxy consume render when a job names none")
    meta_gps: bool = setting(False, "include GPS latitude, longitude and altitude in /meta/ documents (location is personal data)")
    ingest_tokens: tuple[str, ...] = setting((), "comma-separated bearer tokens for PUT /o/<id> uploads; ingest is off when none is set", secret=True)
    ingest_render: str = setting("thumbnail,web", "comma-separated presets an upload renders at once when it names none (?render=); 'none' for none")
    surrogate_key_header: str = setting("Surrogate-Key", "response header carrying the surrogate key of the original (o- and 16 hex of its id's SHA-256) on /v/ and /meta/ responses, so a CDN can purge every URL of an original at once (imgproxy purge --cdn): Surrogate-Key for Varnish (deploy/varnish.vcl) and Fastly, Cache-Tag for Cloudflare; empty sends none")
    cdn_purge: tuple[str, ...] = setting((), "comma-separated CDNs that imgproxy purge --cdn purges by surrogate key, each <kind>:<url>; kinds: varnish (varnish:http://edge:6081, a BAN from an address in the VCL's purgers ACL)")
    sqs_endpoint_url: str = setting("", "SQS-compatible endpoint for imgproxy warm --enqueue and imgproxy consume (ElasticMQ, moto); empty means AWS")

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {why}")

        check(self.env in ("development", "production"), "env", "must be 'development' or 'production'")
        check(self.render_mode in ("thread", "process"), "render_mode", "must be 'thread' or 'process'")
        check(self.log_format in ("auto", "json", "text"), "log_format", "must be 'auto', 'json' or 'text'")
        check(self.not_found_max_age >= 0, "not_found_max_age", "must be >= 0")
        check(1 <= self.port <= 65535, "port", "must be 1..65535")
        check(self.workers >= 1, "workers", "must be at least 1")
        check(self.memory_cache_mb >= 0, "memory_cache_mb", "must be >= 0")
        check(self.render_threads >= 0, "render_threads", "must be >= 0")
        check(self.render_queue >= 0, "render_queue", "must be >= 0")
        check(self.vips_concurrency >= 1, "vips_concurrency", "must be >= 1")
        for name in ("avif_effort", "avif_eager_effort"):
            check(0 <= getattr(self, name) <= 9, name, "must be 0..9")
        check(self.originals_budget_mb * 1024 * 1024 >= self.max_source_bytes, "originals_budget_mb",
              "must hold at least one original of max_source_bytes")
        for name in ("max_source_bytes", "max_source_pixels", "max_source_side", "max_frames", "max_output_pixels",
                     "max_svg_elements", "worker_memory_mb", "worker_cpu_seconds",
                     "s3_max_attempts", "s3_max_connections", "max_header_bytes", "max_connections",
                     "keep_alive_timeout"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("render_timeout", "download_timeout", "s3_lease_seconds", "s3_timeout", "header_timeout",
                     "body_timeout"):
            check(getattr(self, name) > 0, name, "must be > 0")
        unknown = sorted(set(self.input_formats) - set(INPUT_FORMATS))
        check(not unknown, "input_formats", f"unknown format(s) {unknown}; known: {', '.join(INPUT_FORMATS)}")
        check(self.fallback_status in ("keep", "200"), "fallback_status", "must be 'keep' or '200'")
        for origin in self.cors_origins:
            check(_is_origin(origin) or self.cors_origins == ("*",), "cors_origins",
                  f"{origin!r} is not an origin (lower-case scheme://host[:port], no path), and '*' stands alone")
        for name in ("originals", "variants"):
            urls = [url.strip() for url in getattr(self, name).split(",")]
            for url in urls:
                parts = urlsplit(url)
                allowed = ("file", "s3", "http", "https") if name == "originals" else ("file", "s3")
                check(parts.scheme in allowed, name, f"{url!r}: scheme must be one of {', '.join(allowed)}")
                check(parts.scheme not in ("s3", "http", "https") or bool(parts.netloc), name,
                      f"{url!r}: needs a bucket or host")
            check(len(urls) == 1 or all(urlsplit(u).scheme in ("http", "https") for u in urls), name,
                  "only HTTP origins may list several prefixes")
        check(self.surrogate_key_header == "" or bool(_TOKEN.fullmatch(self.surrogate_key_header)),
              "surrogate_key_header", "must be a header name (letters, digits, dashes) or empty")
        for entry in self.cdn_purge:
            kind, _, url = entry.partition(":")
            parts = urlsplit(url)
            check(kind in PURGERS and parts.scheme in ("http", "https") and bool(parts.netloc), "cdn_purge",
                  f"{entry!r}: must be <kind>:<http(s) URL>, kind one of {', '.join(PURGERS)}")
        check(bool(self.warm_presets_list), "warm_presets", "must name at least one preset")
        unknown_outputs = set(self.warm_formats_list) - set(FORMATS)
        check(bool(self.warm_formats_list) and not unknown_outputs, "warm_formats",
              f"must be one or more of {', '.join(FORMATS)}")
        if urlsplit(self.variants).scheme == "s3":
            # A holder that outlives its lease lets a second render start
            # (harmless, but no longer exactly once): the lease must cover
            # the holder's whole download and render.
            check(self.s3_lease_seconds > self.download_timeout + self.render_timeout, "s3_lease_seconds",
                  "must exceed download_timeout + render_timeout")
        for name in ("metrics_allow", "trusted_proxies"):
            for cidr in getattr(self, name):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    check(False, name, f"{cidr!r} is not a network (CIDR) or address")
        if self.env == "production":
            check(bool(self.keys), "keys", "production needs at least one signing key")
            for key in self.keys:
                check(len(key) >= 32, "keys", "production keys must be at least 32 characters")
                check(key != _read_dev_key(self.dev_key_file), "keys",
                      "production refuses the development key")
            for token in self.ingest_tokens:
                check(len(token) >= 32, "ingest_tokens", "production tokens must be at least 32 characters")

    @property
    def warm_presets_list(self) -> tuple[str, ...]:
        return _items(self.warm_presets)

    @property
    def warm_formats_list(self) -> tuple[str, ...]:
        return _items(self.warm_formats)

    @property
    def ingest_render_list(self) -> tuple[str, ...]:
        return tuple(name for name in _items(self.ingest_render) if name != "none")

    @property
    def concurrency(self) -> int:
        """Renders at once on the machine: the setting, or the cores we may run on (taskset, cgroups'
        cpusets), not every core the machine has."""
        return self.render_threads or len(os.sched_getaffinity(0)) or 1

    @property
    def process_concurrency(self) -> int:
        """Renders at once in one of ``workers`` server processes rendering in threads: its share
        of the machine's (process mode shares one pool instead)."""
        return max(1, self.concurrency // self.workers)

    def describe(self) -> dict[str, str]:
        """Settings as printable strings, secrets masked."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"]:
                value = f"<{len(value)} key(s)>"
            out[f.name] = str(value)
        return out


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _items(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _is_origin(value: str) -> bool:
    """``scheme://host[:port]``, lower-case and without a path: what a browser sends as Origin."""
    try:
        parts = urlsplit(value)
        if parts.port == 0:  # .port raises ValueError on one that is no number or out of range
            return False
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and value == value.lower()
            and not (parts.path or parts.query or parts.fragment or parts.username or parts.password))


def _read_dev_key(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _parse(f: dataclasses.Field[Any], raw: Any) -> Any:
    name = f"{ENV_PREFIX}{f.name.upper()}"
    kind: type = type(f.default)
    try:
        if kind is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw).strip()
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from None


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """File, then environment, then explicit overrides (CLI options)."""
    environ = os.environ if environ is None else environ
    path = environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE)
    values: dict[str, Any] = {}
    try:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    except FileNotFoundError:
        if f"{ENV_PREFIX}CONFIG" in environ:
            raise ConfigError(f"{ENV_PREFIX}CONFIG: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{ENV_PREFIX}CONFIG: {path}: {exc}") from None
    known = {f.name: f for f in fields(Settings)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{ENV_PREFIX}CONFIG: unknown setting(s) {sorted(unknown)} in {path}")
    for name in known:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in environ:
            values[name] = environ[env_name]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings(**{name: _parse(known[name], raw) for name, raw in values.items()})


def to_environ(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process."""
    env = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        env[f"{ENV_PREFIX}{f.name.upper()}"] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


def reference() -> str:
    """docs/SETTINGS.md: every setting's name, default and description, made from :class:`Settings`.

    ``make docs`` writes it (``python -m imgproxy.config``); tests/test_readme.py fails when the
    checked-in file differs from what this returns.
    """
    lines = [
        "# Settings",
        "",
        "<!-- Generated from imgproxy/config.py by `make docs` (python -m imgproxy.config). Do not edit:",
        "     change the setting's description in Settings and run `make docs`. -->",
        "",
        "Every setting is read from `config/imgproxy.toml` (another file via `IMGPROXY_CONFIG`) under",
        "its lower-case name, then from the environment variable below, then from the",
        "`imgproxy serve --<name>` option (dashes for underscores), each overriding the one before.",
        "Settings marked *secret* have no command-line option (it would show in `ps`) and are",
        "masked by `imgproxy info`. Lists are comma-separated. See [CONFIGURATION.md](CONFIGURATION.md).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for f in fields(Settings):
        default = ",".join(f.default) if isinstance(f.default, tuple) else str(f.default)
        default = f"`{default.lower() if isinstance(f.default, bool) else default}`" if default else ""
        meaning = f.metadata["description"].replace("|", "\\|")
        if f.metadata["secret"]:
            meaning += " (*secret*)"
        lines.append(f"| `{ENV_PREFIX}{f.name.upper()}` | {default} | {meaning} |".replace("|  |", "| |"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
