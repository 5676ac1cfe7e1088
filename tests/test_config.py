"""Settings: production refuses to start without proper keys; keys never logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, start_server
from imgproxy.config import ConfigError, Settings, load_settings

GOOD_KEY = "prod-key-5d41402abc4b2a76b9719d911017c592"


def test_production_needs_long_keys_that_are_not_the_dev_key(tmp_path: Path) -> None:
    dev_file = tmp_path / "dev-key"
    dev_file.write_text("dev-key-0123456789abcdef0123456789abcdef\n")
    with pytest.raises(ConfigError, match="IMGPROXY_KEYS"):
        Settings(env="production", dev_key_file=str(dev_file))
    with pytest.raises(ConfigError, match="at least 32"):
        Settings(env="production", keys=("short",), dev_key_file=str(dev_file))
    with pytest.raises(ConfigError, match="development key"):
        Settings(env="production", keys=(GOOD_KEY, "dev-key-0123456789abcdef0123456789abcdef"),
                 dev_key_file=str(dev_file))
    ok = Settings(env="production", keys=(GOOD_KEY,), dev_key_file=str(dev_file))
    assert GOOD_KEY not in repr(ok.describe()) and ok.describe()["keys"] == "<1 key(s)>"


def test_limits_are_settings_with_env_names() -> None:
    s = load_settings({"IMGPROXY_CONFIG": str(ROOT / "config" / "imgproxy.toml"),
                       "IMGPROXY_MAX_SVG_ELEMENTS": "5", "IMGPROXY_RENDER_MODE": "process",
                       "IMGPROXY_WORKER_MEMORY_MB": "512"})
    assert (s.max_svg_elements, s.render_mode, s.worker_memory_mb) == (5, "process", 512)
    for bad in ({"IMGPROXY_RENDER_MODE": "fork"}, {"IMGPROXY_MAX_SVG_ELEMENTS": "0"},
                {"IMGPROXY_WORKER_CPU_SECONDS": "0"}, {"IMGPROXY_RENDER_TIMEOUT": "0"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_settings({"IMGPROXY_CONFIG": str(ROOT / "config" / "imgproxy.toml"), **bad})


@pytest.mark.parametrize("keys, why", [("", "at least one signing key"), ("short-key", "at least 32"),
                                       ("DEV", "development key")])
def test_production_server_refuses_to_start(tmp_path: Path, keys: str, why: str) -> None:
    dev_key = "dev-key-0123456789abcdef0123456789abcdef"
    (tmp_path / "dev-key").write_text(dev_key + "\n")
    server = start_server(tmp_path, wait=False, env={
        "IMGPROXY_ENV": "production", "IMGPROXY_KEYS": dev_key if keys == "DEV" else keys,
    })
    try:
        assert server.proc.wait(30) == 2
    finally:
        server.stop()
    log = server.logs()
    assert "IMGPROXY_KEYS" in log and why in log
    assert dev_key not in log and "short-key" not in log.replace("IMGPROXY_KEYS", "")


def test_keys_never_appear_in_logs_or_info(tmp_path: Path) -> None:
    env = {"IMGPROXY_ENV": "production", "IMGPROXY_KEYS": f"{GOOD_KEY},old-{GOOD_KEY}",
           "IMGPROXY_LOG_LEVEL": "debug", "IMGPROXY_RENDER_MODE": "process"}
    server = start_server(tmp_path, env=env)
    try:
        for path in ("/v/thumbnail/x.webp?s=" + "A" * 43, "/v/nope/x.webp", "/v/thumbnail/x.webp",
                     "/healthz", "/metrics", "/nothing"):
            server.get(path)
        server.key = GOOD_KEY
        assert httpx.get(server.url("thumbnail", "missing")).status_code == 404
    finally:
        server.stop()
    info = subprocess.run([sys.executable, "-m", "imgproxy", "info"], env=server.env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    for text in (server.logs(), info.stdout, info.stderr):
        assert GOOD_KEY not in text
    assert "<2 key(s)>" in info.stdout
