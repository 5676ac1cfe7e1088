"""web/gallery.py: the development gallery at /, checked as HTML and in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pyvips
from conftest import require, spawn

from imgproxy.web.demo import SAMPLES, seed


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


@pytest.fixture
def gallery(server):
    seed(server.originals)
    return server


def test_every_picture_has_three_formats_srcsets_and_a_size(gallery):
    r = gallery.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = Tags()
    parser.feed(r.text)
    sources = [a for t, a in parser.tags if t == "source"]
    images = [a for t, a in parser.tags if t == "img"]
    assert len(images) == len(SAMPLES) and len(sources) == 2 * len(SAMPLES)
    assert [s["type"] for s in sources[:2]] == ["image/avif", "image/webp"]
    for img in images:
        assert img["loading"] == "lazy" and int(img["width"]) > 0 and int(img["height"]) > 0
        assert img["sizes"] and "/v/web@w320/" in img["srcset"] and " 320w" in img["srcset"]
    for attrs in sources + images:
        for candidate in attrs["srcset"].split(", "):
            url, width = candidate.rsplit(" ", 1)
            got = gallery.get(url)  # signed server-side: every URL renders, at the width it claims
            assert got.status_code == 200, (url, got.text)
            assert pyvips.Image.new_from_buffer(got.content, "").width == int(width.removesuffix("w"))


def test_only_the_samples_the_originals_store_holds_are_shown(server):
    """Not the default originals folder, so nothing was seeded: no broken images, a note saying why."""
    r = server.get("/")
    assert r.status_code == 200
    parser = Tags()
    parser.feed(r.text)
    assert not [t for t, _ in parser.tags if t in ("img", "source")]
    assert "holds none of the samples" in r.text

    seed(server.originals)
    for path in (server.originals / "demo").glob("zoneplate.*"):
        path.unlink()
    parser = Tags()
    parser.feed(server.get("/").text)
    images = [a for t, a in parser.tags if t == "img"]
    assert [img["alt"] for img in images] == [id for id in SAMPLES if id != "demo/zoneplate"]
    for img in images:
        assert server.get(img["src"]).status_code == 200


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes]) -> str:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not active.exists() or len(active.read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
        time.sleep(0.1)
    port, path = active.read_text().splitlines()[:2]
    return f"ws://127.0.0.1:{port}{path}"


_IMAGES_LOADED = """
(async () => {
  const deadline = Date.now() + 30000;
  const done = () => document.readyState === "complete" && [...document.images].every(i => i.complete);
  while (!done() && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  return JSON.stringify([...document.images].map(i => ({
    src: i.currentSrc, width: i.naturalWidth, height: i.naturalHeight, complete: i.complete})));
})()
"""


@pytest.mark.slow
def test_chromium_decodes_every_image_and_picks_avif(gallery, tmp_path):
    from websockets.sync.client import connect

    require("chromium")
    chromium = shutil.which("chromium")
    profile = tmp_path / "chromium-profile"
    proc = spawn(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--window-size=1400,4000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with connect(_devtools_port(profile, proc), max_size=None, open_timeout=30) as ws:
            ids = iter(range(1, 1000))

            def call(method: str, session: str | None = None, **params: object) -> dict:
                message_id = next(ids)
                ws.send(json.dumps({"id": message_id, "method": method, "params": params,
                                    **({"sessionId": session} if session else {})}))
                while True:
                    reply = json.loads(ws.recv(timeout=60))
                    if reply.get("id") == message_id:
                        assert "error" not in reply, reply
                        return reply["result"]

            target = call("Target.createTarget", url=gallery.base_url + "/")["targetId"]
            session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            deadline = time.monotonic() + 30
            while True:  # createTarget returns before the page has navigated
                state = call("Runtime.evaluate", session, expression="location.href + ' ' + document.readyState",
                             returnByValue=True)["result"].get("value", "")
                if state == f"{gallery.base_url}/ complete" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            result = call("Runtime.evaluate", session, expression=_IMAGES_LOADED, awaitPromise=True,
                          returnByValue=True)
            images = json.loads(result["result"]["value"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("\nchromium chose:", [(re.sub(r"\?s=.*", "", i["src"]), i["width"]) for i in images])
    assert len(images) == len(SAMPLES)
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert ".avif?s=" in image["src"], image["src"]  # the first <source> this browser decodes
