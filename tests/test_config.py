"""Settings: sources and precedence, validation, production keys never logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, start_server

from imgproxy.config import ConfigError, Settings, load_settings, to_environ


def test_defaults_have_descriptions():
    from dataclasses import fields

    for f in fields(Settings):
        assert f.metadata["description"], f.name
    s = Settings()
    assert s.env == "development" and s.port == 8080 and s.keys == ()


def test_file_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 9000\nmemory_cache_mb = 10\nkeys = ["a", "b"]\n')
    env = {"IMGPROXY_CONFIG": str(cfg), "IMGPROXY_MEMORY_CACHE_MB": "20"}
    s = load_settings(env, {"workers": 3})
    assert (s.port, s.memory_cache_mb, s.workers, s.keys) == (9000, 20, 3, ("a", "b"))
    assert load_settings({**env, "IMGPROXY_KEYS": " x, y ,"}).keys == ("x", "y")


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("PORT", "0"), ("ENV", "staging"), ("WORKERS", "0"),
    ("RENDER_MODE", "fork"), ("ORIGINALS", "ftp://x/"), ("VARIANTS", "https://x/"),
    ("HTTP_ALLOW_PRIVATE", "maybe"), ("RENDER_TIMEOUT", "-1"), ("MAX_SOURCE_PIXELS", "0"),
    ("AVIF_EFFORT", "10"), ("AVIF_EAGER_EFFORT", "-1"), ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
    ("SURROGATE_KEY_HEADER", "Surrogate Key"), ("CDN_PURGE", "http://edge:6081"),
    ("CDN_PURGE", "fastly:https://api.fastly.com"), ("CDN_PURGE", "varnish:edge:6081"),
])
def test_invalid_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=f"IMGPROXY_{name}"):
        load_settings({f"IMGPROXY_{name}": value, "IMGPROXY_CONFIG": "/dev/null"})


def test_unknown_keys_in_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings({"IMGPROXY_CONFIG": str(cfg)})


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="IMGPROXY_CONFIG"):
        load_settings({"IMGPROXY_CONFIG": str(tmp_path / "nope.toml")})


def test_production_requires_strong_keys(tmp_path):
    base = {"IMGPROXY_CONFIG": "/dev/null", "IMGPROXY_ENV": "production"}
    with pytest.raises(ConfigError, match="IMGPROXY_KEYS"):
        load_settings(base)
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings({**base, "IMGPROXY_KEYS": "short"})
    dev = tmp_path / "dev-key"
    dev.write_text("d" * 43 + "\n")
    with pytest.raises(ConfigError, match="development key"):
        load_settings({**base, "IMGPROXY_KEYS": "d" * 43, "IMGPROXY_DEV_KEY_FILE": str(dev)})
    assert load_settings({**base, "IMGPROXY_KEYS": "p" * 40}).env == "production"


def test_to_environ_round_trips():
    s = load_settings({"IMGPROXY_CONFIG": "/dev/null", "IMGPROXY_KEYS": "a,b", "IMGPROXY_PORT": "81"})
    assert load_settings({**to_environ(s), "IMGPROXY_CONFIG": "/dev/null"}) == s


def test_describe_masks_keys():
    s = Settings(keys=("secret-value",))
    assert "secret-value" not in str(s.describe())


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


@pytest.mark.server
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


@pytest.mark.server
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
