"""cli/doctor.py: ``imgproxy doctor`` on a healthy setup, on broken stores, and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEY, ROOT, S3_ENV


def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config" / "imgproxy.toml"),
            "IMGPROXY_PRESETS": str(ROOT / "config" / "presets.toml"), "IMGPROXY_KEYS": KEY,
            "IMGPROXY_DEV_KEY_FILE": str(tmp_path / "dev-key"), **env}
    return subprocess.run([sys.executable, "-m", "imgproxy", "doctor"], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)


def lines(out: str) -> dict[str, str]:
    return {line[6:28].strip(): line[:4].strip() for line in out.splitlines() if line[:4].strip()
            in ("ok", "warn", "FAIL")}


@pytest.mark.slow
def test_a_healthy_local_setup(tmp_path: Path):
    (tmp_path / "originals").mkdir()
    out = doctor(tmp_path, IMGPROXY_ORIGINALS=(tmp_path / "originals").as_uri(),
                 IMGPROXY_VARIANTS=(tmp_path / "variants").as_uri())
    assert out.returncode == 0, out.stdout + out.stderr
    found = lines(out.stdout)
    assert found["keys"] == "ok" and found["variant store (write)"] == "ok" and found["render worker"] == "ok"
    for name in ("jpeg", "png", "webp", "gif", "avif", "tiff", "svg", "heic", "raw"):
        assert found[f"input {name}"] == "ok", name  # heic and raw included: they work, so no warn
    for fmt in ("webp", "avif", "jpg", "png"):
        assert found[f"output {fmt}"] == "ok", fmt
    assert "no problems found" in out.stdout
    assert not [p for p in (tmp_path / "variants").rglob("*") if p.is_file() and ".locks" not in p.parts]


@pytest.mark.slow
def test_broken_stores_exit_non_zero(tmp_path: Path):
    (tmp_path / "variants-file").write_text("not a folder")
    out = doctor(tmp_path, IMGPROXY_ORIGINALS=(tmp_path / "gone").as_uri(),
                 IMGPROXY_VARIANTS=(tmp_path / "variants-file").as_uri(), IMGPROXY_KEYS="")
    assert out.returncode == 1, out.stdout + out.stderr
    found = lines(out.stdout)
    assert found["originals store"] == "FAIL" and found["variant store (write)"] == "FAIL"
    assert found["keys"] == "warn"  # the development key
    assert "problems found" in out.stdout


@pytest.mark.slow
def test_s3_write_probe_is_cleaned_up(tmp_path: Path, moto, bucket):
    out = doctor(tmp_path, IMGPROXY_ORIGINALS=f"s3://{bucket}/originals", IMGPROXY_VARIANTS=f"s3://{bucket}/variants",
                 IMGPROXY_S3_ENDPOINT_URL=moto.endpoint, **S3_ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert lines(out.stdout)["variant store (write)"] == "ok"
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
