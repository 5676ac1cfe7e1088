"""The servers under test, each a context manager yielding a running :class:`Server`.

All listen on 127.0.0.1 only, on a free port, with config written into a temp
dir; each runs in its own session so stopping it stops its whole tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .paths import MAIN, THUMBOR_VENV

BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    pid: int
    # Further instances of the same server (thumbor runs one process per port).
    extra_ports: tuple[int, ...] = ()
    extra_pids: tuple[int, ...] = ()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.extra_ports)

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid, *self.extra_pids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ours(originals: Path, variants: Path, presets: Path, log: Path, workers: int,
         memory_mb: int | None = None, extra_env: dict[str, str] | None = None,
         render_mode: str = "thread") -> Iterator[Server]:
    env = dict(os.environ)
    env.update({
        "IMGPROXY_ENV": "development",
        "IMGPROXY_KEYS": BENCH_KEY,
        "IMGPROXY_ORIGINALS": originals.resolve().as_uri(),
        "IMGPROXY_VARIANTS": variants.resolve().as_uri(),
        "IMGPROXY_PRESETS": str(presets.resolve()),
        "IMGPROXY_LOG_LEVEL": "warning",
        "IMGPROXY_RENDER_MODE": render_mode,
    })
    if memory_mb is not None:
        env["IMGPROXY_MEMORY_CACHE_MB"] = str(memory_mb)
    env.update(extra_env or {})
    port = free_port()
    cmd = [sys.executable, "-m", "imgproxy", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    with running("ours", cmd, env, MAIN, log, port, "/healthz") as server:
        yield server


THUMBOR_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = {result_storage!r}
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {result_root!r}
RESULT_STORAGE_STORES_UNSAFE = True
ALLOW_UNSAFE_URL = True
AUTO_WEBP = False
RESPECT_ORIENTATION = True
# libvips' AVIF effort 2 is libaom speed 7; Pillow would default to 6.
AVIF_SPEED = 7
MAX_AGE = 86400
"""


@contextlib.contextmanager
def thumbor(originals: Path, workdir: Path, log: Path, processes: int,
            result_storage: bool) -> Iterator[Server]:
    """``processes`` single-process thumbors, one port each, as thumbor is deployed.

    ``thumbor --processes N`` forks N tornado loops on one socket, and tornado's
    accept loop lets whichever process wakes first take every connection that
    is waiting: with keep-alive clients one process did all the work while the
    other idled. One port per process, connections spread over them, is fair.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "thumbor.conf"
    conf.write_text(THUMBOR_CONF.format(
        root=str(originals.resolve()),
        result_storage="thumbor.result_storages.file_storage" if result_storage
        else "thumbor.result_storages.no_storage",
        result_root=str((workdir / "results").resolve()),
    ))
    name = "thumbor-hits" if result_storage else "thumbor"
    with contextlib.ExitStack() as stack:
        instances = []
        for i in range(processes):
            port = free_port()
            cmd = [str(THUMBOR_VENV / "bin" / "thumbor"), "-c", str(conf), "-i", "127.0.0.1",
                   "-p", str(port), "-l", "warning", "--processes", "1"]
            instances.append(stack.enter_context(running(
                name, cmd, dict(os.environ), workdir, log.with_suffix(f".{i}.log"), port,
                "/healthcheck")))
        first = instances[0]
        yield Server(name, first.port, first.pid, tuple(s.port for s in instances[1:]),
                     tuple(s.pid for s in instances[1:]))


NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ image/webp webp; image/avif avif; image/jpeg jpg; image/png png; }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ try_files $uri =404; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(root: Path, workdir: Path, log: Path, workers: int) -> Iterator[Server]:
    """Static files: the ceiling for a hit. Same URL paths as ours, query ignored."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root nginx would drop its workers to 'nobody', who may not read the bench dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, workers=workers, dir=workdir.resolve(), port=port,
                                      root=root.resolve()))
    cmd = ["nginx", "-c", str(conf), "-p", str(workdir.resolve()), "-e", str(workdir / "error.log")]
    with running("nginx", cmd, dict(os.environ), workdir, log, port, None) as server:
        yield server


@contextlib.contextmanager
def running(name: str, cmd: list[str], env: dict[str, str], cwd: Path, log: Path, port: int,
            health: str | None) -> Iterator[Server]:
    """``cmd`` in a session of its own, output to ``log``, once ``health`` answers 200 on ``port``
    (or the port accepts, without ``health``); its whole process group is stopped on exit."""
    log = log.resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_ready(proc, port, health, log)
        yield Server(name, port, proc.pid)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, health: str | None, log: Path,
                timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            if health is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s; see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # Forked workers may outlive a master that exited first.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
