"""Where thumbor's time goes for one render: its Pillow engine's steps, timed on one thread.

Run under the thumbor venv's Python (stdlib + Pillow only):
``python bench/pillow_profile.py FILE WIDTH HEIGHT FMT QUALITY`` prints JSON with
median CPU ms of decode (with ``draft``, as thumbor's engine asks for JPEG),
resize (LANCZOS, thumbor's default filter) and encode (thumbor's save options:
JPEG optimize + progressive; WebP and AVIF at the quality, AVIF speed 7 as the
bench's thumbor.conf sets).
"""

from __future__ import annotations

import io
import json
import resource
import statistics
import sys


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    from PIL import Image

    path, width, height, fmt, quality = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    parts: dict[str, list[float]] = {"decode_ms": [], "resize_ms": [], "encode_ms": []}
    for _ in range(3):
        c0 = _cpu()
        im = Image.open(path)
        scale = min(width / im.width, height / im.height, 1.0)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im.draft(None, size)
        im.load()
        c1 = _cpu()
        if im.size != size:
            im = im.resize(size, Image.Resampling.LANCZOS)
        c2 = _cpu()
        if fmt == "jpg" and im.mode != "RGB":
            im = im.convert("RGB")
        options: dict[str, object] = {"quality": quality}
        if fmt == "jpg":
            options.update(optimize=True, progressive=True)
        if fmt == "avif":
            options["speed"] = 7
        im.save(io.BytesIO(), {"jpg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[fmt], **options)
        c3 = _cpu()
        for name, value in zip(parts, (c1 - c0, c2 - c1, c3 - c2)):
            parts[name].append(value * 1000)
    json.dump({name: round(statistics.median(v), 1) for name, v in parts.items()}, sys.stdout)


if __name__ == "__main__":
    main()
