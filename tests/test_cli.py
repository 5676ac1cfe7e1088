import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import KEY, ROOT, free_port, spawn


def imgproxy(*args: str, env: dict | None = None, cwd=None, timeout=30) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
            "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "imgproxy", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_sign_prints_the_url():
    out = imgproxy("sign", "thumbnail", "gallery/42/photo", "--format", "webp",
                   "--base-url", "https://img.example.com", env={"IMGPROXY_KEYS": KEY})
    assert out.returncode == 0, out.stderr
    from imgproxy import sign_url

    assert out.stdout.strip() == sign_url(KEY, "thumbnail", "gallery/42/photo", "webp", "https://img.example.com")


def test_sign_refuses_unknown_presets_and_bad_ids():
    assert imgproxy("sign", "nope", "a", env={"IMGPROXY_KEYS": KEY}).returncode == 2
    out = imgproxy("sign", "web", "../a", env={"IMGPROXY_KEYS": KEY})
    assert out.returncode == 2 and "id" in out.stderr


@pytest.mark.parametrize("env,message", [
    ({"IMGPROXY_WORKERS": "many"}, "IMGPROXY_WORKERS"),
    ({"IMGPROXY_MAX_SOURCE_BYTES": "-5"}, "IMGPROXY_MAX_SOURCE_BYTES"),
    ({"IMGPROXY_ENV": "production"}, "IMGPROXY_KEYS"),
    ({"IMGPROXY_ORIGINALS": "ftp://x"}, "IMGPROXY_ORIGINALS"),
])
def test_serve_refuses_invalid_settings(env, message, tmp_path):
    out = imgproxy("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr


def test_serve_refuses_a_bad_preset(tmp_path):
    bad = tmp_path / "presets.toml"
    bad.write_text("[broken]\nwidth = 100\nheight = 100\nfit = 'stretch'\n")
    out = imgproxy("serve", "--port", str(free_port()), env={"IMGPROXY_PRESETS": str(bad)}, cwd=tmp_path)
    assert out.returncode == 2 and "broken" in out.stderr and "fit" in out.stderr


def test_production_refuses_the_development_key(tmp_path):
    dev = tmp_path / "dev-key"
    dev.write_text("d" * 43)
    out = imgproxy("serve", env={"IMGPROXY_ENV": "production", "IMGPROXY_KEYS": "d" * 43,
                                 "IMGPROXY_DEV_KEY_FILE": str(dev)}, cwd=tmp_path)
    assert out.returncode == 2 and "development key" in out.stderr
    assert "d" * 43 not in out.stderr + out.stdout


@pytest.mark.server
def test_development_default_seeds_samples_and_prints_urls(tmp_path):
    """What `make run` does: embedded default, generated key, demo URLs that work."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
           "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml")}
    env.pop("IMGPROXY_KEYS", None)
    log = tmp_path / "log"
    proc = spawn([sys.executable, "-m", "imgproxy", "serve", "--port", str(port)],
                 env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        text = log.read_text()
        assert "DEVELOPMENT signing key" in text
        key = (tmp_path / "data" / "dev-key").read_text().strip()
        assert len(key) >= 32 and key not in text
        assert oct((tmp_path / "data" / "dev-key").stat().st_mode)[-3:] == "600"
        urls = [line.strip() for line in text.splitlines() if line.strip().startswith("http://")]
        assert len(urls) == 3
        for url in urls:
            r = httpx.get(url, timeout=30)
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
        assert sorted(p.name for p in (tmp_path / "data/originals/demo").iterdir()) == [
            "gradient.jpg", "waves.webp", "zoneplate.png"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_info_lists_every_setting():
    out = imgproxy("info", env={"IMGPROXY_KEYS": KEY})
    assert out.returncode == 0, out.stderr
    assert "libvips 8." in out.stdout and "max_source_pixels" in out.stdout and "thumb-square" in out.stdout
    assert KEY not in out.stdout


def test_info_lists_the_formats_it_tried():
    out = imgproxy("info").stdout
    inputs = out.split("inputs (tried):")[1].split("outputs (tried):")[0]
    for name in ("jpeg", "png", "webp", "gif", "avif", "tiff", "svg", "jxl"):
        assert f"  {name} " in inputs and "yes" in inputs.split(f"  {name} ")[1].splitlines()[0]
    assert "LibRaw" in inputs and "pi-heif" in inputs
    outputs = out.split("outputs (tried):")[1]
    for name in ("webp", "avif", "jpg", "png", "gif"):
        assert "yes" in outputs.split(f"  {name} ")[1].splitlines()[0]
