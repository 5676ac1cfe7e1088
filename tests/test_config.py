import pytest

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
