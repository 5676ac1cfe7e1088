"""clients/next-loader.js, run by real node against a real server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from artwork import decode, write_presets
from conftest import ROOT, add_original, corpus, require

from imgproxy import sign_url

SCRIPT = """
const loader = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const out = [];
  for (const [src, width] of [["photo", 600], ["photo", 1000], ["/photo#0.8,0.3", 5000]]) {
    const url = loader({ src, width, quality: 75 });
    const r = await fetch(url);
    const file = `${process.argv[2]}/${out.length}.webp`;
    fs.writeFileSync(file, Buffer.from(await r.arrayBuffer()));
    out.push({ url, status: r.status, file });
  }
  console.log(JSON.stringify(out));
})();
"""


@pytest.mark.slow
def test_the_loader_signs_the_nearest_ladder_width(server_factory, tmp_path):
    require("node")
    server = server_factory(env={"IMGPROXY_PRESETS": str(write_presets(tmp_path))})
    add_original(server, corpus("large/mei__Issue_266.jpg"), "photo")
    env = {"PATH": "/usr/bin:/bin", "IMGPROXY_KEY": server.key, "IMGPROXY_BASE_URL": server.base_url + "/",
           "IMGPROXY_PRESET": "card", "IMGPROXY_WIDTHS": "320,640,960,1280"}
    out = subprocess.run(["node", "-e", SCRIPT, str(ROOT / "clients/next-loader.js"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [r["status"] for r in results] == [200, 200, 200]
    assert results[0]["url"] == sign_url(server.key, "card", "photo", "webp", server.base_url, width=640)
    assert results[2]["url"] == sign_url(server.key, "card", "photo", "webp", server.base_url,
                                         width=1280, focus=(0.8, 0.3))
    widths = [decode(Path(r["file"]).read_bytes()).width for r in results]
    assert widths == [640, 1280, 1280]
    # Without a key (a browser bundle) it refuses to sign.
    bare = subprocess.run(["node", "-e", f"require({json.dumps(str(ROOT / 'clients/next-loader.js'))})"
                           "({src: 'a', width: 1})"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert bare.returncode != 0 and "no signing key" in bare.stderr
