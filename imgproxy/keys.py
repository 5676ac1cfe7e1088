"""Signing keys: configured ones, or a generated development key."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from .config import ConfigError, Settings

log = logging.getLogger("imgproxy")


def resolve_keys(settings: Settings) -> tuple[str, ...]:
    """The configured keys; in development without any, ``dev_key_file``'s key.

    Production never gets here without keys (Settings refuses to build).
    """
    if settings.keys:
        return settings.keys
    if settings.env == "production":  # pragma: no cover - Settings already refused
        raise ConfigError("IMGPROXY_KEYS: production needs at least one signing key")
    return (dev_key(settings.dev_key_file),)


def dev_key(path: str) -> str:
    file = Path(path)
    try:
        key = file.read_text().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    log.warning("using the DEVELOPMENT signing key in %s; set IMGPROXY_KEYS for production", path)
    return key
