"""The Dockerfile and deploy/ kit: linted, parsed, and the image built and run.

There is no Docker engine here, so the image is built the way a CI machine
without one can: a Debian bookworm minbase made by debootstrap becomes the
base image, ``podman build`` (chroot isolation, vfs storage) builds the
Dockerfile on it, and ``buildah run`` runs the result (``podman run`` needs
cgroups). Images live in their own storage under ``CACHE``, so the base image
and the build's layers are reused by the next run and nothing else is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pyvips
import yaml
from conftest import KEY, ROOT, descendants, free_port, require

from imgproxy import sign_url

CACHE = Path("/var/tmp/imgproxy-docker-cache")
BASE_IMAGE = "localhost/debian:bookworm-minbase"
BUILD_IMAGE = "localhost/imgproxy-build:test"  # the builder stage, tagged so its layers stay cached
IMAGE = "localhost/imgproxy:test"
APP_UID = 10001


# --- static checks ----------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    here = Path(sys.executable).parent / "hadolint"
    if not here.exists() and shutil.which("hadolint") is None:
        require("hadolint")
    exe = str(here) if here.exists() else "hadolint"
    result = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_imgproxy_behind_nginx_with_minio():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"minio", "createbucket", "imgproxy", "nginx"}
    assert services["imgproxy"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    assert (ROOT / "deploy" / services["imgproxy"]["build"]["context"] / "Dockerfile").exists()
    env = services["imgproxy"]["environment"]
    bucket = env["IMGPROXY_VARIANTS"].removeprefix("s3://").split("/")[0]
    assert f"local/{bucket}" in " ".join(services["createbucket"]["command"])
    mount = next(v for v in services["nginx"]["volumes"] if v.endswith("/etc/nginx/conf.d/default.conf:ro"))
    assert (ROOT / "deploy" / mount.split(":")[0]).resolve() == ROOT / "deploy" / "nginx.conf"
    # deploy/nginx.conf's upstream is 127.0.0.1:8080: nginx shares imgproxy's network.
    assert services["nginx"]["network_mode"] == "service:imgproxy"
    assert "upstream imgproxy {\n    server 127.0.0.1:8080;" in (ROOT / "deploy" / "nginx.conf").read_text()


# --- the image, built and run -----------------------------------------------------------


def debian_mirror() -> str:
    """The mirror apt already uses for bookworm (deb822 .sources or one-line .list)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split() and "bookworm" in fields.get("Suites", "").split()
                        and fields.get("Enabled", "yes") != "no"):
                    return fields["URIs"].split()[0]
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    return words[1]
    return "http://deb.debian.org/debian"


class Podman:
    """podman and buildah on vfs storage of their own, with the containers.conf they need here."""

    def __init__(self, log: Path) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        conf, storage = CACHE / "containers.conf", CACHE / "storage.conf"
        # Without cgroups, podman build fails setting the default ulimits.
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{CACHE}/storage"\n'
                           f'runroot = "/run/imgproxy-docker-cache"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
        self.log = log

    def run(self, *args: str, timeout: float = 600, check: bool = True,
            stdin: subprocess.Popen[bytes] | None = None) -> subprocess.CompletedProcess[str]:
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(args)}\n")
        started = time.monotonic()
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=stdin.stdout if stdin else None)
        with self.log.open("a") as log:
            log.write(result.stdout[-20000:] + result.stderr[-20000:])
            log.write(f"# exit {result.returncode} after {time.monotonic() - started:.1f} s\n")
        if check and result.returncode != 0:
            raise AssertionError(f"{args[0]} {args[2]} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def podman(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("podman", "--storage-driver=vfs", *args, **kw)  # type: ignore[arg-type]

    def buildah(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("buildah", "--storage-driver=vfs", *args, **kw)  # type: ignore[arg-type]

    def image_size(self, image: str) -> str:
        return self.podman("images", "--format", "{{.Size}}", image).stdout.strip()


def mounts_below(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (so each can be unmounted in turn)."""
    root, found = root.resolve(), []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # the 5th field; space, tab, newline and backslash come octal-escaped
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_below(root: Path) -> None:
    """Unmount what debootstrap mounted in ``root`` (/proc, /sys, /dev/pts…) and a killed run left.

    Removing a tree with /proc (or a bind-mounted /dev) still mounted in it
    fails, or worse, deletes through the mount; every later run then failed.
    """
    for point in mounts_below(root):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], check=True, capture_output=True)
    left = mounts_below(root)
    assert not left, f"still mounted below {root}: {left}"


def remove_rootfs(rootfs: Path) -> None:
    """A stale (unfinished) rootfs removed for a fresh debootstrap, its mounts first."""
    unmount_below(rootfs)
    if rootfs.exists():
        shutil.rmtree(rootfs)


def make_base_image(podman: Podman) -> None:
    """debootstrap a bookworm minbase (kept in CACHE) and import it, unless it is there already."""
    if podman.podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    rootfs, done = CACHE / "rootfs", CACHE / "rootfs.done"
    if not done.exists():
        remove_rootfs(rootfs)
        try:
            podman.run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                       "bookworm", str(rootfs), debian_mirror(), timeout=1200)
        finally:
            unmount_below(rootfs)  # debootstrap unmounts only when it succeeds
        # What every slim Debian image drops: downloaded packages and package lists.
        for junk in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/cache/apt/*.bin"),
                     *rootfs.glob("var/lib/apt/lists/*")]:
            if junk.is_file():
                junk.unlink()
        done.touch()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    podman.podman("import", "-", BASE_IMAGE, stdin=tar)
    assert tar.wait() == 0


def build(podman: Podman) -> float:
    """Build the image; returns seconds taken."""
    # The build's pip reaches the package index only with this machine's CA
    # bundle and pip configuration; the Dockerfile itself needs neither.
    mounts = []
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/xdg/pip", "/etc/pip.conf"):
        if os.path.exists(path):
            mounts += ["-v", f"{path}:{path}:ro"]
    common = ["build", "--isolation=chroot", "--network=host", "--format=docker",
              "--build-arg", f"BASE={BASE_IMAGE}", *mounts]
    started = time.monotonic()
    built = podman.podman(*common, "-t", IMAGE, str(ROOT), timeout=1800)
    took = time.monotonic() - started
    # Tag the builder stage (its last step's id is printed just before stage 2
    # starts), so the prune below keeps its layers for the next build.
    stage = re.search(r"^--> ([0-9a-f]{11,64})\n\[2/2\] STEP 1/", built.stdout, re.M)
    if stage:
        podman.podman("tag", stage.group(1), BUILD_IMAGE)
    podman.podman("image", "prune", "--force")  # layers of earlier builds nothing tags any more
    return took


class _Debootstrap:
    """Podman's stand-in for :func:`make_base_image`: debootstrap mounts /proc in the
    rootfs as the real one does, then fails (as when killed) or finishes."""

    def __init__(self, rootfs: Path, fail: bool) -> None:
        self.rootfs, self.fail = rootfs, fail

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        assert args[0] == "debootstrap"
        assert not self.rootfs.exists() and not mounts_below(self.rootfs), "a stale rootfs was not removed"
        (self.rootfs / "proc").mkdir(parents=True)
        (self.rootfs / "etc").mkdir()
        (self.rootfs / "etc" / "os-release").write_text("bookworm\n")
        subprocess.run(["mount", "-t", "proc", "proc", str(self.rootfs / "proc")], check=True)
        if self.fail:
            raise AssertionError("debootstrap failed (137)")
        subprocess.run(["umount", str(self.rootfs / "proc")], check=True)
        return subprocess.CompletedProcess(args, 0, "", "")

    def podman(self, *args: str, stdin: subprocess.Popen[bytes] | None = None,
               **kw: object) -> subprocess.CompletedProcess[str]:
        if stdin is not None:
            assert stdin.stdout is not None
            stdin.stdout.read()  # the rootfs tar: let it finish
        return subprocess.CompletedProcess(args, 1 if args[:2] == ("image", "exists") else 0, "", "")


def test_a_failed_debootstrap_leaves_nothing_mounted_and_a_stale_cache_recovers(tmp_path, monkeypatch):
    """A killed debootstrap left /proc mounted in the cache, and every later run failed removing it."""
    if os.geteuid() != 0 or shutil.which("umount") is None:
        pytest.skip("mounting needs root")
    cache = tmp_path / "cache"
    monkeypatch.setattr(sys.modules[__name__], "CACHE", cache)
    monkeypatch.setattr(sys.modules[__name__], "debian_mirror", lambda: "http://deb.example")
    rootfs = cache / "rootfs"
    try:
        with pytest.raises(AssertionError, match="debootstrap failed"):
            make_base_image(_Debootstrap(rootfs, fail=True))  # type: ignore[arg-type]
        assert not mounts_below(cache)  # unmounted in a finally

        # A cache an older run left behind: /proc, a tmpfs and one inside it still mounted.
        for kind, point in (("proc", "proc"), ("tmpfs", "dev"), ("tmpfs", "dev/pts")):
            (rootfs / point).mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", kind, kind, str(rootfs / point)], check=True)
        (rootfs / "dev" / "null-ish").write_text("on the tmpfs")
        make_base_image(_Debootstrap(rootfs, fail=False))  # type: ignore[arg-type]
        assert (cache / "rootfs.done").exists() and (rootfs / "etc" / "os-release").exists()
        assert not mounts_below(cache)
    finally:
        for point in mounts_below(cache):
            subprocess.run(["umount", "--lazy", str(point)], check=False)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Podman, dict]]:
    require("podman", "buildah", "debootstrap")
    podman = Podman(tmp_path_factory.mktemp("docker") / "podman.log")
    started = time.monotonic()
    make_base_image(podman)
    base_seconds = time.monotonic() - started
    build_seconds = build(podman)
    config = json.loads(podman.podman("image", "inspect", IMAGE).stdout)[0]
    print(f"\ndocker: base image {base_seconds:.0f} s ({podman.image_size(BASE_IMAGE)}), "
          f"build {build_seconds:.0f} s, image {podman.image_size(IMAGE)}")
    yield podman, config


@pytest.fixture
def container(image: tuple[Podman, dict]) -> Iterator[str]:
    podman, _ = image
    name = f"imgproxy-test-{os.getpid()}"
    podman.buildah("rm", name, check=False)
    podman.buildah("from", "--name", name, IMAGE)
    yield name
    podman.buildah("rm", name)


def run_args(name: str, *env: str) -> list[str]:
    """``buildah run`` of ``name``, the way ``docker run -e …`` would run it.

    The image's volumes are folders of the container's own that every run sees
    (buildah 1.28 lets them win over a ``-v`` bind mount onto the same path,
    so the test goes through them instead of host folders).
    """
    flags = [arg for e in env for arg in ("-e", e)]
    return ["buildah", "--storage-driver=vfs", "run", "--isolation", "chroot", "--network", "host", *flags, name, "--"]


def uids(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {int(u) for u in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()}  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_image_serves_signed_variants_as_non_root(image, container, tmp_path):
    podman, config = image
    command = config["Config"]["Entrypoint"] + config["Config"]["Cmd"]
    assert config["Config"]["User"] == f"{APP_UID}:{APP_UID}"

    # Without keys the default command refuses to start, at once, saying why.
    started = time.monotonic()
    no_keys = podman.run(*run_args(container), *command, check=False, timeout=120)
    assert no_keys.returncode != 0
    assert "IMGPROXY_KEYS: production needs at least one signing key" in no_keys.stderr
    assert time.monotonic() - started < 60

    # The original goes into the originals volume, written by the image's user.
    png = pyvips.Image.black(640, 480).draw_rect([200, 30, 30], 40, 40, 300, 200, fill=True).write_to_buffer(".png")
    write = "import sys; open('/data/originals/sample.png', 'wb').write(sys.stdin.buffer.read())"
    subprocess.run([*run_args(container), "python3", "-c", write], input=png, env=podman.env,
                   check=True, timeout=60)

    port = free_port()
    env = [f"IMGPROXY_KEYS={KEY}", f"IMGPROXY_PORT={port}"]
    log = tmp_path / "server.log"
    proc = subprocess.Popen([*run_args(container, *env), *command], env=podman.env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

        # The image's own HEALTHCHECK command passes inside the container.
        test = (config.get("Healthcheck") or config["Config"]["Healthcheck"])["Test"]  # podman puts it on top
        assert test[0] == "CMD"
        podman.run(*run_args(container, f"IMGPROXY_PORT={port}"), *test[1:], timeout=60)

        response = httpx.get(sign_url(KEY, "thumbnail", "sample", "webp", base), timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/webp"
        variant = pyvips.Image.new_from_buffer(response.content, "")
        assert (variant.width, variant.height) == (300, 225)
        # The variant lands in the variants volume (written after the response is sent).
        digest = hashlib.sha256(response.content).hexdigest()
        deadline = time.monotonic() + 20
        while digest not in (stored := podman.run(*run_args(container), "sh", "-c",
                                                  "sha256sum /data/variants/thumbnail/*/sample.webp",
                                                  check=False).stdout):
            assert time.monotonic() < deadline, stored
            time.sleep(0.5)
        assert httpx.get(base + "/v/thumbnail/sample.webp?s=" + "A" * 43, timeout=10).status_code == 403

        servers = [p for p in descendants(proc.pid)
                   if b"imgproxy" in Path(f"/proc/{p}/cmdline").read_bytes()
                   and b"buildah" not in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert servers, "no imgproxy process found"
        assert all(uids(p) == {APP_UID} for p in servers)
        assert podman.run(*run_args(container), "id", "-u").stdout.strip() == str(APP_UID)
    finally:
        leftovers = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # buildah run takes its command down with it
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in leftovers:  # none so far; by pid, and only if it is still ours
            try:
                if b"imgproxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
