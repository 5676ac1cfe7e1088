"""Hostile SVGs: rasterised only, no file or network reference followed."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest
import pyvips
from conftest import TESTIMAGES, Server, corpus

MAGIC = {
    "webp": (b"RIFF", "image/webp"),
    "avif": (b"\0\0\0", "image/avif"),
    "jpg": (b"\xff\xd8\xff", "image/jpeg"),
    "png": (b"\x89PNG", "image/png"),
}
_XINCLUDE = re.compile(rb"<xi:include.*?</xi:include>", re.S)


@pytest.fixture
def server(server_factory) -> Server:  # type: ignore[no-untyped-def]
    return server_factory(env={"IMGPROXY_RENDER_MODE": "process"})


def put(server: Server, id: str, data: bytes) -> str:
    (server.originals / f"{id}.svg").write_bytes(data)
    return id


def pixels(server: Server, id: str) -> pyvips.Image:
    response = httpx.get(server.url("preview", id, "png"), timeout=60)
    assert response.status_code == 200, response.text
    return pyvips.Image.new_from_buffer(response.content, "")


def difference(a: pyvips.Image, b: pyvips.Image) -> float:
    assert (a.width, a.height) == (b.width, b.height)
    return float((a - b).abs().avg())


def test_xinclude_of_etc_passwd_renders_the_fallback_not_the_file(server: Server) -> None:
    hostile = corpus("svg/librsvg__disallowed-996-xinclude-etc-passwd.svg").read_bytes()
    passwd = html.escape(Path("/etc/passwd").read_text()).encode()
    served = pixels(server, put(server, "hostile", hostile))
    fallback = pixels(server, put(server, "fallback", _XINCLUDE.sub(b"This text should appear", hostile)))
    leaked = pixels(server, put(server, "leaked", _XINCLUDE.sub(passwd, hostile)))
    assert difference(served, fallback) == 0
    assert difference(served, leaked) > 0.5  # what following the include would have drawn


def test_external_images_are_not_loaded(server: Server, tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    pyvips.Image.black(50, 50).new_from_image([255, 0, 0]).cast("uchar").write_to_file(str(red))
    template = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                b'width="100" height="100"><rect width="100" height="100" fill="white"/>%s</svg>')
    refs = [f'<image x="0" y="0" width="100" height="100" xlink:href="{href}"/>'.encode()
            for href in (red.as_uri(), str(red), "red.png", "http://127.0.0.1:9/red.png")]
    (server.originals / "red.png").write_bytes(red.read_bytes())  # beside the SVG, too
    plain = pixels(server, put(server, "plain", template % b""))
    assert plain.avg() > 250
    for n, ref in enumerate(refs):
        assert difference(pixels(server, put(server, f"ref{n}", template % ref)), plain) == 0, ref


@pytest.mark.parametrize("fmt", list(MAGIC))
def test_svgs_are_only_ever_served_as_raster(server: Server, fmt: str) -> None:
    files = sorted(p for p in (TESTIMAGES / "svg").iterdir()) + [
        corpus("corrupt/librsvg__bug942-xinclude-recursion.svg"),
        corpus("bomb/librsvg__bug515-pattern-billion-laughs.svg"),
    ]
    for path in files:
        id = re.sub(r"[^A-Za-z0-9_-]", "_", path.name)
        (server.originals / id).write_bytes(path.read_bytes())
        response = httpx.get(server.url("thumbnail", id, fmt), timeout=60)
        assert response.status_code in (200, 413, 415, 422), (path.name, response.text)
        if response.status_code != 200:
            assert response.headers["content-type"] == "application/json"
            continue
        magic, content_type = MAGIC[fmt]
        assert response.headers["content-type"] == content_type
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content.startswith(magic) if fmt != "avif" else response.content[4:8] == b"ftyp"
        for marker in (b"<svg", b"<script", b"javascript:", b"onload"):
            assert marker not in response.content.lower(), (path.name, marker)


def test_an_svg_with_too_many_elements_is_refused_before_parsing(server: Server) -> None:
    id = "many"
    (server.originals / id).write_bytes(corpus("bomb/librsvg__bug515-too-many-elements.svgz").read_bytes())
    response = httpx.get(server.url("thumbnail", id, "png"), timeout=60)
    assert response.status_code == 413
    assert response.json()["limit"] == "max_svg_elements"
