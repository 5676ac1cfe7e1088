"""Make sure the comparison tools exist: nginx and wrk (apt) and thumbor (its own venv).

A fresh machine gets them installed when we are root; otherwise the harness
says what is missing and the affected rows are left out, never guessed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import MAIN, THUMBOR_VENV

#: Pinned so numbers from different runs compare; matplotlib draws the plots and
#: py-spy profiles the hit path (bench/profilers/profile_hits.py).
THUMBOR_PACKAGES = ("thumbor==7.8.0", "matplotlib==3.11.2", "py-spy==0.4.3")
APT_PACKAGES = ("nginx", "wrk")


def ensure_apt_tools(install: bool) -> dict[str, bool]:
    missing = [name for name in APT_PACKAGES if shutil.which(name) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, check=False,
                       timeout=900)
        # Debian starts the packaged nginx on port 80; we run our own, so leave
        # theirs alone rather than guess at the service manager.
    still = [name for name in APT_PACKAGES if shutil.which(name) is None]
    if still:
        print(f"bench: {' '.join(still)} not found; install as root with "
              f"`apt-get install -y {' '.join(still)}`. Their rows will be missing.",
              file=sys.stderr, flush=True)
    return {name: shutil.which(name) is not None for name in APT_PACKAGES}


def ensure_thumbor(install: bool, log: Path) -> tuple[bool, str]:
    """(usable, why-not). Creates bench/.venv-thumbor if asked and missing."""
    python = THUMBOR_VENV / "bin" / "python"
    if not python.exists() and install:
        print("creating bench/.venv-thumbor (pip install thumbor)", file=sys.stderr, flush=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            made = subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=300)
            if made.returncode == 0:
                made = subprocess.run([str(python), "-m", "pip", "install", "-q", *THUMBOR_PACKAGES],
                                      stdout=out, stderr=subprocess.STDOUT, timeout=1200)
        if made.returncode != 0:
            shutil.rmtree(THUMBOR_VENV, ignore_errors=True)
            return False, (f"pip install {' '.join(THUMBOR_PACKAGES)} failed (see {log}); "
                           "on Debian, `apt-get install -y python3-dev libjpeg-dev zlib1g-dev "
                           "libcurl4-openssl-dev libssl-dev` and run again")
    if not python.exists():
        return False, "bench/.venv-thumbor is absent (smoke mode does not install it)"
    check = subprocess.run([str(python), "-c", "import thumbor"], capture_output=True, text=True)
    if check.returncode != 0:
        return False, f"thumbor does not import: {check.stderr.strip()[-300:]}"
    return True, ""


def plot_python() -> str | None:
    """A Python that has matplotlib: the thumbor venv's, or ours as a fallback."""
    for python in (str(THUMBOR_VENV / "bin" / "python"), sys.executable):
        if Path(python).exists() and subprocess.run(
                [python, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return python
    return None


def machine() -> dict[str, str]:
    """What the numbers were measured on, and with which versions."""
    import pyvips

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    info = {
        "cpu": model[1].strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "ram_gib": f"{int(mem[1]) / 2**20:.1f}" if mem else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pyvips": pyvips.__version__,
        "git_commit": _out(["git", "rev-parse", "--short", "HEAD"], cwd=MAIN),
        "nginx": _out(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _out(["wrk", "-v"]).split(" Copyright")[0].replace("wrk ", ""),
    }
    python = THUMBOR_VENV / "bin" / "python"
    if python.exists():
        info["thumbor"] = _out([str(python), "-c", "import thumbor; print(thumbor.__version__)"])
        info["pillow"] = _out([str(python), "-c", "import PIL; print(PIL.__version__)"])
    return info


def _out(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=30)
    except OSError:
        return "not installed"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"
