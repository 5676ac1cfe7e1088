"""Shared fixtures: real servers on 127.0.0.1, real libvips, the shared corpus."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTIMAGES = ROOT.parent / "shared" / "testimages"
KEY = "test-key-0123456789abcdefghijklmnopqrstuv"


# --- Processes the suite starts ---------------------------------------------------------------
# Servers, origins and moto run in sessions of their own (a stray signal to the terminal's group
# must not stop them mid-test); every one is listed here so that Ctrl-C, SIGTERM and the end of
# the run kill them all at once instead of waiting on each fixture's graceful stop.
# `make check` sets IMGPROXY_TESTS_NO_SERVERS and runs `-m "not server"`: a test that starts
# one without the mark fails there, so the mark cannot drift.
_STARTED: list[subprocess.Popen[bytes]] = []
SERVER_FIXTURES = {"server", "server_factory", "origin", "moto", "bucket", "s3"}


def spawn(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` in a new session, killed with its group when the run ends or is stopped."""
    if os.environ.get("IMGPROXY_TESTS_NO_SERVERS"):
        pytest.fail("this test starts a process: mark it pytest.mark.server", pytrace=False)
    proc = subprocess.Popen(args, start_new_session=True, **kw)
    _STARTED.append(proc)
    return proc


def _kill_started() -> None:
    for proc in _STARTED:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


def _interrupted(signum: int, frame: Any) -> None:
    # Kill first: pytest's unwinding runs each fixture's graceful stop, seconds apiece.
    _kill_started()
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_keyboard_interrupt(excinfo: Any) -> None:
    _kill_started()


def pytest_unconfigure(config: pytest.Config) -> None:
    _kill_started()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size, *options)``: a tmpfs of ``size`` (``2m``) mounted at ``tmp_path/name``,
    unmounted after the test; skips where mounting needs root. Full and read-only filesystems
    are real ones in these tests, as in ``make soak``."""
    mounts: list[Path] = []

    def mount(name: str, size: str, *options: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs",
                               str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounts:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Write ``folder/.filler`` (a dot-file: not a key) until the filesystem is full."""
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 65536)
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def read_only(path: Path) -> None:
    """Remount the tmpfs at ``path`` read-only."""
    if subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True).returncode:
        pytest.skip("cannot remount a tmpfs read-only here")


def require(*tools: str) -> None:
    """Skip without the tools, except in CI, where a missing tool is a failure: .ci/run installs
    every one, so a skip there would hide a broken install."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        reason = f"not installed: {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def corpus(relative: str) -> Path:
    path = TESTIMAGES / relative
    if not path.exists():
        pytest.skip(f"test corpus missing: {path}")
    return path


@dataclass
class Server:
    base_url: str
    proc: subprocess.Popen[bytes]
    originals: Path
    variants: Path
    log: Path
    key: str = KEY
    env: dict[str, str] = field(default_factory=dict)

    def url(self, preset: str, id: str, fmt: str = "webp") -> str:
        from imgproxy import sign_url

        return sign_url(self.key, preset, id, fmt, self.base_url)

    def get(self, path_or_url: str, **kw: object) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        return httpx.get(url, timeout=60, **kw)  # type: ignore[arg-type]

    def metric(self, name: str) -> float:
        """Sum of all samples of ``name`` in /metrics."""
        text = self.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    tmp: Path,
    *,
    originals: Path | str | None = None,
    variants: Path | str | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Server:
    originals = originals or tmp / "originals"
    variants = variants or tmp / "variants"
    if isinstance(originals, Path):
        originals.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMGPROXY_CONFIG": str(ROOT / "config" / "imgproxy.toml"),
        "IMGPROXY_PRESETS": str(ROOT / "config" / "presets.toml"),
        "IMGPROXY_KEYS": KEY,
        "IMGPROXY_ORIGINALS": originals.as_uri() if isinstance(originals, Path) else originals,
        "IMGPROXY_VARIANTS": variants.as_uri() if isinstance(variants, Path) else variants,
        "IMGPROXY_DEV_KEY_FILE": str(tmp / "dev-key"),
        "IMGPROXY_LOG_LEVEL": "warning",
        **(env or {}),
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp / f"server-{port}.log"
    proc = spawn(
        [sys.executable, "-m", "imgproxy", "serve", "--port", str(port), "--workers", str(workers)],
        env=full_env, cwd=tmp, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", proc, Path(str(originals)), Path(str(variants)), log, env=full_env)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited ({server.proc.returncode}):\n{server.logs()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become ready:\n{server.logs()}")


@pytest.fixture(scope="session")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3000x2000 JPEG of gradients: exact sizes for every preset are known."""
    import pyvips

    path = tmp_path_factory.mktemp("src") / "landscape.jpg"
    xy = pyvips.Image.xyz(3000, 2000)
    (xy[0] % 256).bandjoin([xy[1] % 256, (xy[0] + xy[1]) % 256]).cast("uchar").copy(
        interpretation="srgb").jpegsave(str(path), Q=85)
    return path


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def factory(**kw: object) -> Server:
        sub = tmp_path / f"s{len(servers)}"
        sub.mkdir()
        kw.setdefault("originals", tmp_path / "originals")
        server = start_server(sub, **kw)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()


def add_original(server_or_root: Server | Path, source: Path, id: str, keep_suffix: bool = True) -> str:
    """Copy ``source`` into the originals folder as ``id`` (+ its extension)."""
    root = server_or_root.originals if isinstance(server_or_root, Server) else server_or_root
    target = root / (id + (source.suffix if keep_suffix else ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return id


# --- HTTP origins: tests/origins.py on a real uvicorn ------------------------------------

ORIGIN_PHOTO = "exif/mei__Apple_iPhone_4.jpg"


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the test origin (``http://127.0.0.1:N``)."""
    port = free_port()
    log = tmp_path_factory.mktemp("origin") / "origin.log"
    proc = spawn(
        [sys.executable, "-m", "uvicorn", "tests.origins:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--timeout-graceful-shutdown", "1"],
        cwd=ROOT, env={**os.environ, "ORIGIN_PHOTO": str(corpus(ORIGIN_PHOTO)), "PYTHONPATH": str(ROOT)},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base + "/stats", timeout=1)
            break
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    yield base
    proc.kill()
    proc.wait()


# --- S3: moto in server mode, a separate process on 127.0.0.1 ------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class Moto:
    """``python -m moto.server`` on a fixed port, so it can be stopped and started again."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**S3_ENV, "IMGPROXY_S3_ENDPOINT_URL": self.endpoint, **extra}

    def start(self, timeout: float = 30) -> None:
        self.proc = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **S3_ENV}, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited:\n{self.log.read_text(errors='replace')}")
            try:
                httpx.get(self.endpoint + "/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("moto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    server = Moto(free_port(), tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto: Moto, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the session's moto."""
    name = "b-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]
    moto.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
async def s3(moto: Moto) -> Any:
    """An aioboto3 client on the session's moto, for driving stores directly."""
    import aioboto3
    from botocore.config import Config

    session = aioboto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                               region_name="us-east-1")
    async with session.client("s3", endpoint_url=moto.endpoint,
                              config=Config(max_pool_connections=32)) as client:
        yield client


def put_original(moto: Moto, bucket: str, key: str, source: Path) -> None:
    moto.client().put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
