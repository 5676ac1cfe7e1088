"""A render worker process, the other half of :mod:`.processes`: it caps
itself, then runs one job (:mod:`imgproxy.render.jobs`) at a time.

Started by :class:`imgproxy.workers.ProcessRenderer` as
``python -m imgproxy.workers.child <fd> <memory_mb> <cpu_seconds> <vips_concurrency>``
with a clean environment (no signing keys, no cloud credentials) and one end
of a socket pair as ``<fd>``. The wire format is length-prefixed frames:

    parent -> worker   !Q length, pickle of a job            (the parent is trusted)
    worker -> parent   !IQ meta/body lengths, JSON meta, body (the worker is not:
                       a decoder exploit must not become code in the server, so
                       the parent never unpickles what a worker sends)

Meta is ``{"ready": pid}`` once at start, then one result or error per job
(:mod:`.codec`). ``"exit": true`` in a reply says the worker exits after it
(out of memory).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import pickle
import resource
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from .codec import JOB_HEADER, encode_reply


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(sock: socket.socket, meta: dict[str, Any], body: bytes = b"") -> None:
    for part in encode_reply(meta, body):
        sock.sendall(part)


def _limit_cpu(seconds: int) -> None:
    """Allow the next job ``seconds`` of CPU; past that the kernel sends SIGXCPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


_PR_SET_PDEATHSIG = 1

#: Heap kept between jobs before it is given back to the system.
TRIM_ABOVE = 256 * 1024 * 1024


def _trimmer() -> Callable[[], None]:
    """glibc's ``malloc_trim`` once the worker holds more than ``TRIM_ABOVE``.

    Without it a worker keeps the high-water mark of every render it ever
    ran (decoder buffers are freed into glibc's arenas, not to the OS). But a
    trim after every job costs more than it saves: the next render faults
    the same pages back in (measured: 4 ms CPU on a 20 ms 2 MP render), so
    ordinary renders keep their warm heap and only a big one is trimmed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    page = os.sysconf("SC_PAGE_SIZE")

    def trim_if_large() -> None:
        with open("/proc/self/statm", "rb") as f:
            resident = int(f.read().split()[1]) * page
        if resident > TRIM_ABOVE:
            trim(0)

    return trim_if_large


def serve(sock: socket.socket, cpu_seconds: int) -> None:
    from ..render import run_job
    from .codec import encode_result, error_meta

    trim = _trimmer()
    while True:
        header = _read_exactly(sock, JOB_HEADER.size)
        if header is None:
            return  # the parent closed our socket: shut down
        payload = _read_exactly(sock, JOB_HEADER.unpack(header)[0])
        if payload is None:
            return
        job = pickle.loads(payload)
        _limit_cpu(cpu_seconds)
        try:
            result = run_job(job)
        except BaseException as exc:
            meta = error_meta(exc)
            _send(sock, meta)
            if meta.get("exit"):
                return
        else:
            _send(sock, *encode_result(result))
            del result
        trim()


def _self_test() -> None:
    """Render a 2x2 PNG under the caps, so a pool that cannot work never starts."""
    import pyvips

    from ..presets import Preset
    from ..render import Limits, RenderJob, Source, render

    png = pyvips.Image.black(2, 2).pngsave_buffer()
    render(RenderJob(Source(data=png), Preset(name="self-test", width=1, height=1), "png", Limits()))


def _die_with_parent() -> None:
    """SIGKILL when our parent (a server process or the render pool) dies: an
    orphan would finish a render nobody waits for, on CPU the new pool needs."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str]) -> int:
    fd, memory_mb, cpu_seconds, vips_concurrency = (int(a) for a in argv)
    _die_with_parent()
    # Caps first, before any untrusted byte is read. No core files: a crashing
    # decoder must not fill the disk with dumps of other people's images.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from ..render import configure

    configure(vips_concurrency)
    try:
        _self_test()
    except BaseException as exc:
        print(f"imgproxy render worker: self-test failed: {exc!r}", file=sys.stderr)
        return 3
    sock = socket.socket(fileno=fd)
    _send(sock, {"ready": os.getpid()})
    try:
        serve(sock, cpu_seconds)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
