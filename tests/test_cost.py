"""Cost attacks: originals cheap to send and dear to render, refused from their header
or remembered; SVG work bounded (render/svgcost.py); /metrics and /healthz restricted."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Server


def tall_png(path: Path, height: int = 99_000_000) -> Path:
    """A valid 1 x ``height`` grey PNG of about 95 KB, written without holding its rows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    rows = b"\x00\x00" * 1_000_000  # filter byte + one pixel, a million rows at a time
    body = b"".join(deflate.compress(rows) for _ in range(height // 1_000_000)) + deflate.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_an_absurd_shape_is_refused_from_its_header(server: Server) -> None:
    tall_png(server.originals / "tall.png")
    assert (server.originals / "tall.png").stat().st_size < 200_000
    started = time.monotonic()
    r = server.get(server.url("thumbnail", "tall"))
    assert r.status_code == 413, r.text
    assert r.json()["limit"] == "max_source_side" and time.monotonic() - started < 5


@pytest.mark.slow
def test_an_original_that_keeps_timing_out_is_answered_at_once(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={"IMGPROXY_MAX_SOURCE_SIDE": "100000000", "IMGPROXY_RENDER_TIMEOUT": "1.5"})
    tall_png(server.originals / "tall.png")
    for fmt in ("webp", "png"):  # two strikes, each a real render killed at its deadline
        r = server.get(server.url("thumbnail", "tall", fmt))
        assert r.status_code == 504, r.text
    for fmt in ("avif", "jpg"):
        started = time.monotonic()
        r = server.get(server.url("thumbnail", "tall", fmt))
        assert r.status_code == 504 and "not tried again" in r.json()["detail"]
        assert time.monotonic() - started < 0.5
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200


# --- SVG work (render/svgcost.py) --------------------------------------------------------

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
       b'width="100" height="100">%s</svg>')


def use_nesting(levels: int = 7) -> bytes:
    """Ten <use> of a group of ten <use> of ...: 10**levels rects in a few hundred bytes."""
    defs = b'<g id="g0">' + b'<rect width="1" height="1"/>' * 10 + b"</g>"
    for n in range(1, levels):
        defs += b'<g id="g%d">' % n + b'<use xlink:href="#g%d"/>' % (n - 1) * 10 + b"</g>"
    return SVG % (b"<defs>" + defs + b'</defs><use href="#g%d"/>' % (levels - 1))


def entity_nesting(levels: int = 6) -> bytes:
    """Entities of entities of rects: 10**levels elements the bytes never show."""
    entities = b'<!ENTITY e0 "' + b"<rect width='1' height='1'/>" * 10 + b'">'
    for n in range(1, levels):
        entities += b'<!ENTITY e%d "' % n + b"&e%d;" % (n - 1) * 10 + b'">'
    return (b"<?xml version='1.0'?><!DOCTYPE svg [" + entities + b"]>"
            + SVG % b"&e%d;" % (levels - 1))


def deep_nesting(depth: int = 5000) -> bytes:
    return SVG % (b"<g>" * depth + b'<rect width="1" height="1"/>' + b"</g>" * depth)


def many_filters(n: int = 2000) -> bytes:
    f = (b'<filter id="f"><feGaussianBlur stdDeviation="30"/><feTurbulence baseFrequency="0.9"/>'
         b'<feMorphology radius="20"/></filter>')
    return SVG % (b"<defs>" + f + b"</defs>" + b'<rect width="100" height="100" filter="url(#f)"/>' * n)


def text_lines(megabytes: float = 3) -> bytes:
    """Megabytes of text in short lines: each cheap, together 10-26 s of layout per variant."""
    line = b'<text x="0" y="%d" font-size="9">lorem ipsum dolor sit amet, consectetur adipiscing elit</text>'
    return SVG % b"".join(line % (n % 100) for n in range(int(megabytes * 1e6) // len(line)))


def long_run(chars: int = 20_000) -> bytes:
    """One unbroken run of text: librsvg lays it out in more than linear time (13 s here)."""
    return SVG % (b'<text x="0" y="50">' + b"lorem ipsum " * (chars // 12) + b"</text>")


def text_entities() -> bytes:
    """A few bytes of entities that expand to megabytes of text."""
    entities = b'<!ENTITY t0 "' + b"lorem ipsum " * 10 + b'">'
    for n in range(1, 5):
        entities += b'<!ENTITY t%d "' % n + b"&t%d;" % (n - 1) * 10 + b'">'
    return (b"<?xml version='1.0'?><!DOCTYPE svg [" + entities + b"]>"
            + SVG % b"<text>&t4;</text>")


@pytest.mark.parametrize("make", [text_lines, long_run, text_entities])
def test_svg_text_is_costed_by_its_length(make: Callable[[], bytes]) -> None:
    from imgproxy.errors import TooLarge
    from imgproxy.render.svgcost import check_svg_cost

    data = make()
    assert data.count(b"<") - data.count(b"</") < 100_000  # few elements: the element count let it by
    started = time.monotonic()
    with pytest.raises(TooLarge) as info:
        check_svg_cost(data, 100_000)
    assert info.value.extra["limit"] == "max_svg_elements" and time.monotonic() - started < 2
    assert "text" in str(info.value)


def test_ordinary_text_and_text_outside_text_elements_pass() -> None:
    from imgproxy.render.svgcost import check_svg_cost

    sentence = b"A sentence of ordinary length, about sixty characters long. "
    paragraph = b'<text x="0" y="%d">' + sentence * 10 + b"</text>"
    check_svg_cost(SVG % b"".join(paragraph % n for n in range(20)), 100_000)  # several pages of text
    check_svg_cost(SVG % (b"<metadata>" + b"x" * 3_000_000 + b"</metadata><style>/*" + b"y" * 100_000
                          + b"*/</style>"), 100_000)  # not laid out


def test_svg_text_gets_413_from_a_real_server(server: Server) -> None:
    (server.originals / "text.svg").write_bytes(text_lines())
    started = time.monotonic()
    r = server.get(server.url("thumbnail", "text", "png"))
    assert r.status_code == 413 and r.json()["limit"] == "max_svg_elements", r.text
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("make", [use_nesting, entity_nesting, deep_nesting, many_filters])
def test_svg_work_is_bounded_before_librsvg_parses_it(make: Callable[[], bytes]) -> None:
    from imgproxy.errors import TooLarge
    from imgproxy.render.svgcost import check_svg_cost

    data = make()
    assert data.count(b"<") - data.count(b"</") < 100_000 and len(data) < 200_000  # the old count let it by
    started = time.monotonic()
    with pytest.raises(TooLarge) as info:
        check_svg_cost(data, 100_000)
    assert info.value.extra["limit"] == "max_svg_elements" and time.monotonic() - started < 2


def test_ordinary_svgs_cost_what_they_show() -> None:
    from conftest import TESTIMAGES

    from imgproxy.render.svgcost import check_svg_cost

    for path in sorted((TESTIMAGES / "svg").glob("*.svg")):
        check_svg_cost(path.read_bytes(), 100_000)
    check_svg_cost(use_nesting(4), 100_000)  # 10,000 rects: fine
    check_svg_cost(many_filters(100), 100_000)
    check_svg_cost(SVG % b'<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g>', 100)  # a cycle


@pytest.mark.slow
def test_costly_svgs_get_413_from_a_real_server(server: Server) -> None:
    from conftest import corpus

    pattern = corpus("bomb/librsvg__bug515-pattern-billion-laughs.svg").read_bytes()
    for name, data in (("use", use_nesting()), ("entity", entity_nesting()), ("pattern", pattern)):
        (server.originals / f"{name}.svg").write_bytes(data)
        started = time.monotonic()
        r = server.get(server.url("thumbnail", name, "png"))
        assert r.status_code == 413 and r.json()["limit"] == "max_svg_elements", (name, r.text)
        assert time.monotonic() - started < 5, name


# --- /metrics and /healthz restricted (web/allow.py) -------------------------------------

def test_metrics_and_health_only_for_the_allowed_networks(server_factory: Callable[..., Server]) -> None:
    from conftest import add_original, corpus

    from imgproxy.config import ConfigError, Settings

    outside = server_factory(env={"IMGPROXY_METRICS_ALLOW": "10.0.0.0/8,192.168.1.7"}, wait=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(outside.base_url + "/metrics", timeout=2)
            if r.status_code != 503:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and outside.proc.poll() is None, outside.logs()
        time.sleep(0.1)
    assert r.status_code == 404 and "imgproxy_" not in r.text
    assert httpx.get(outside.base_url + "/healthz", timeout=10).status_code == 404
    add_original(outside, corpus("exif/mei__Apple_iPhone_4.jpg"), "photo")
    assert httpx.get(outside.url("thumbnail", "photo"), timeout=60).status_code == 200  # variants unaffected

    inside = server_factory(env={"IMGPROXY_METRICS_ALLOW": "10.0.0.0/8, 127.0.0.0/8, ::1"})
    assert inside.get("/metrics").status_code == 200 and inside.get("/healthz").status_code == 200
    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        Settings(metrics_allow=("10.0.0.0/33",))
