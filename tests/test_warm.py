"""``imgproxy warm`` as a user runs it: a real subprocess on real stores (local, moto SQS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import KEY, ROOT, S3_ENV, Moto, corpus, start_server

PHOTOS = ["exif/mei__Apple_iPhone_4.jpg", "exif/mei__Nikon_D1X.jpg", "exif/exifjs__dsc_09827.jpg"]


def warm(tmp: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
            "IMGPROXY_PRESETS": str(ROOT / "config/presets.toml"), "IMGPROXY_KEYS": KEY,
            "IMGPROXY_ORIGINALS": (tmp / "originals").as_uri(), "IMGPROXY_VARIANTS": (tmp / "variants").as_uri(),
            "IMGPROXY_RENDER_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "imgproxy", "warm", *args], env=full, cwd=tmp, input=stdin or "",
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    folder = tmp_path / "originals" / "gallery" / "42"
    folder.mkdir(parents=True)
    for i, photo in enumerate(PHOTOS):
        shutil.copyfile(corpus(photo), folder / f"p{i}.jpg")
    return tmp_path


def variants(tmp: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp / "variants")) for p in (tmp / "variants").rglob("*.*")
                  if p.is_file() and ".locks" not in p.parts)


def test_warm_a_prefix_then_a_rerun_skips_everything(gallery: Path) -> None:
    out = warm(gallery, "--prefix", "gallery/42/", "--presets", "thumbnail,web", "--formats", "webp,jpg", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["originals"], summary["rendered"], summary["skipped"], summary["failed"]) == (3, 12, 0, 0)
    assert len(variants(gallery)) == 12 and all(v.endswith((".webp", ".jpg")) for v in variants(gallery))
    assert "warm: " not in out.stderr or "originals" in out.stderr  # plain progress lines, if any
    again = json.loads(warm(gallery, "--prefix", "gallery/42/", "--presets", "thumbnail,web",
                            "--formats", "webp,jpg", "--json").stdout)
    assert (again["rendered"], again["skipped"]) == (0, 12)


def test_warm_defaults_ids_file_and_stdin(gallery: Path) -> None:
    (gallery / "ids.txt").write_text("# a comment\ngallery/42/p0\n\ngallery/42/p1\n")
    out = warm(gallery, "--ids-file", "ids.txt", "--json")
    assert out.returncode == 0, out.stderr
    # The documented default: thumbnail, preview, web x webp, avif.
    assert json.loads(out.stdout)["rendered"] == 2 * 3 * 2
    out = warm(gallery, "--ids-file", "-", "--presets", "thumbnail", "--formats", "jpg", "--json",
               stdin="gallery/42/p2\n")
    assert json.loads(out.stdout)["rendered"] == 1
    out = warm(gallery, "gallery/42/p2", "--presets", "thumbnail", "--formats", "jpg")
    assert out.returncode == 0 and "0 rendered, 1 skipped" in out.stdout


def test_a_corrupt_original_is_reported_once_and_fails_the_run(gallery: Path) -> None:
    (gallery / "originals/gallery/42/bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 50)
    (gallery / "originals/gallery/42/empty.png").write_bytes(b"")
    out = warm(gallery, "--prefix", "gallery/", "--presets", "thumbnail", "--formats", "webp,jpg", "--json")
    assert out.returncode == 1
    summary = json.loads(out.stdout)
    assert summary["rendered"] == 6 and summary["failed_originals"] == 2 and summary["retries"] == 0
    assert sorted(f["id"] for f in summary["failures"]) == ["gallery/42/bad", "gallery/42/empty"]
    assert sum(summary["failed_by_category"].values()) == 4
    assert all(f["status"] in (415, 422) for f in summary["failures"])
    text = warm(gallery, "--prefix", "gallery/", "--presets", "thumbnail", "--formats", "webp,jpg")
    assert text.returncode == 1
    assert text.stderr.count("failed gallery/42/bad:") == 1 and "undecodable" in text.stdout


def test_usage_errors_exit_2(gallery: Path) -> None:
    out = warm(gallery, "--prefix", "x/", env={"IMGPROXY_ORIGINALS": "https://origin.example.com/photos/"})
    assert out.returncode == 2 and "cannot list" in out.stderr and "--ids-file" in out.stderr
    out = warm(gallery, "a", "--presets", "nope")
    assert out.returncode == 2 and "unknown preset" in out.stderr
    out = warm(gallery, "a", "--formats", "bmp")
    assert out.returncode == 2 and "unknown format" in out.stderr
    out = warm(gallery, "../etc/passwd")
    assert out.returncode == 2
    out = warm(gallery, "--prefix", "nothing-here/")
    assert out.returncode == 2 and "no ids" in out.stderr


@pytest.mark.slow
def test_via_a_server_keeps_the_http_mode(gallery: Path) -> None:
    (gallery / "srv").mkdir()
    server = start_server(gallery / "srv", originals=gallery / "originals", variants=gallery / "variants")
    try:
        out = warm(gallery, "gallery/42/p0", "gallery/42/p1", "--presets", "thumbnail", "--formats", "webp",
                   "--via", server.base_url, "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["outcomes"] == {"render": 2}
        assert server.metric("imgproxy_renders_total") == 2
        out = warm(gallery, "gallery/42/p0", "gallery/42/missing", "--presets", "thumbnail", "--formats", "webp",
                   "--via", server.base_url)
        assert out.returncode == 1
        assert ": 0 rendered, 0 already stored, 1 from memory, 1 failed (1 × 404)" in out.stdout, out.stdout
        assert "{" not in out.stdout and "404 http" in out.stderr  # the failed URL, on a line of its own
    finally:
        server.stop()


def test_enqueue_sends_one_job_per_original(gallery: Path, moto: Moto) -> None:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto.endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    url = sqs.create_queue(QueueName=f"warm-{os.getpid()}-{gallery.name}")["QueueUrl"]
    out = warm(gallery, "--prefix", "gallery/42/", "--presets", "thumbnail,web", "--enqueue", url, "--json",
               env={**S3_ENV, "IMGPROXY_SQS_ENDPOINT_URL": moto.endpoint})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["enqueued"] == 3
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [json.loads(m["Body"]) for m in got]
    assert sorted(b["id"] for b in bodies) == ["gallery/42/p0", "gallery/42/p1", "gallery/42/p2"]
    assert all(b["presets"] == ["thumbnail", "web"] and b["formats"] == ["webp", "avif"] for b in bodies)
    assert variants(gallery) == []  # nothing rendered here


class FlakyOrigin:
    """An HTTP origin that answers 503 to its first ``failures`` requests, then serves ``root``."""

    def __init__(self, root: Path, failures: int) -> None:
        import http.server
        import threading

        origin = self
        self.failures = failures
        self.requests = 0

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def send_head(self):  # type: ignore[no-untyped-def]
                origin.requests += 1
                if origin.requests <= origin.failures:
                    self.send_error(503)
                    return None
                return super().send_head()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("failures", "code", "rendered"), [(2, 0, 1), (100, 1, 0)])
def test_an_origin_5xx_runs_the_job_again(gallery: Path, failures: int, code: int, rendered: int) -> None:
    origin = FlakyOrigin(gallery / "originals", failures)
    try:
        out = warm(gallery, "gallery/42/p0", "--presets", "thumbnail", "--formats", "webp", "--json",
                   env={"IMGPROXY_ORIGINALS": origin.url, "IMGPROXY_HTTP_ALLOW_PRIVATE": "1"})
    finally:
        origin.close()
    summary = json.loads(out.stdout)
    assert out.returncode == code, out.stderr
    assert summary["retries"] == 2 and summary["rendered"] == rendered, summary
    if code:
        assert [(f["status"], f["error"]) for f in summary["failures"]] == [(502, "bad_gateway")]
    assert len(variants(gallery)) == rendered


def test_warm_a_bucket_root_skips_the_variant_store_inside_it(tmp_path: Path, moto: Moto, bucket: str) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=corpus(PHOTOS[0]).read_bytes())
    env = {**moto.env(), "IMGPROXY_ORIGINALS": f"s3://{bucket}", "IMGPROXY_VARIANTS": f"s3://{bucket}/variants"}
    args = ("--prefix", "", "--presets", "thumbnail", "--formats", "webp", "--json")
    first = warm(tmp_path, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["rendered"] == 1
    # The bucket now holds variants/thumbnail/<digest>/photo.webp: not an original to warm.
    again = warm(tmp_path, *args, env=env)
    summary = json.loads(again.stdout)
    assert (summary["originals"], summary["rendered"], summary["skipped"]) == (1, 0, 1), summary
    assert "ignored 1 keys" in again.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len([k for k in keys if not k.startswith("variants/.leases/")]) == 2, keys


@pytest.mark.parametrize(("done", "total", "rendered", "whole"), [
    (12, 79, 40, True),  # ordinary counts: everything fits
    (5678, 123456, 34068, False),  # a large backfill: the count and ETA still do
])
def test_the_progress_bar_fits_80_columns(done: int, total: int, rendered: int, whole: bool) -> None:
    import io

    from rich.console import Console

    from imgproxy.batch.progress import Progress, Tally, bar

    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=True)
    tally = Tally(originals=total, variants=total * 6, started=time.monotonic() - 42)
    tally.originals_done, tally.rendered, tally.failed = done, rendered, 2
    progress = Progress("warm", total, "originals")
    progress.done, progress.started = done, tally.started
    shown = bar("warm", console)
    shown.add_task("warm", total=total, completed=done, text=progress.beside(tally.figures(), console.width))
    console.print(shown.make_tasks_table(shown.tasks))
    line = console.export_text().rstrip("\n")
    assert "\n" not in line and len(line) <= 80 and "…" not in line, line
    assert f"{done}/{total} originals ETA " in line and "━" in line, line
    assert f"{rendered} rendered" in line and ("2 failed, 0 skipped" in line) is whole, line
