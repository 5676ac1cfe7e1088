"""ThumbHash encoding (https://evanw.github.io/thumbhash/, MIT).

The ``thumbhash`` package (0.1.2) encodes opaque images correctly but fails
on any image with transparency: an operator-precedence slip makes its alpha
channel a tuple (``TypeError: type tuple doesn't define __round__``). This is
the same encoder with that line right; ``tests/test_meta.py`` checks it gives
the package's bytes for opaque images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _channel(channel: list[float], w: int, h: int, nx: int, ny: int) -> tuple[float, list[float], float]:
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):
            fx = [math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)]
            f = 0.0
            for y in range(h):
                fy = math.cos(math.pi / h * cy * (y + 0.5))
                row = y * w
                for x in range(w):
                    f += channel[x + row] * fx[x] * fy
            f /= w * h
            if cx > 0 or cy > 0:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def encode(w: int, h: int, rgba: Sequence[int]) -> bytes:
    """The ThumbHash of a ``w`` x ``h`` RGBA image (at most 100x100)."""
    if not (0 < w <= 100 and 0 < h <= 100):
        raise ValueError(f"{w}x{h} doesn't fit in 100x100")
    n = w * h
    avg_r = avg_g = avg_b = avg_a = 0.0
    for j in range(0, n * 4, 4):
        alpha = rgba[j + 3] / 255
        avg_r += alpha / 255 * rgba[j]
        avg_g += alpha / 255 * rgba[j + 1]
        avg_b += alpha / 255 * rgba[j + 2]
        avg_a += alpha
    if avg_a:
        avg_r, avg_g, avg_b = avg_r / avg_a, avg_g / avg_a, avg_b / avg_a
    has_alpha = avg_a < n
    limit = 5 if has_alpha else 7
    lx = max(1, round(limit * w / max(w, h)))
    ly = max(1, round(limit * h / max(w, h)))
    lum: list[float] = []
    p: list[float] = []
    q: list[float] = []
    a: list[float] = []
    for j in range(0, n * 4, 4):
        alpha = rgba[j + 3] / 255
        r = avg_r * (1 - alpha) + alpha / 255 * rgba[j]
        g = avg_g * (1 - alpha) + alpha / 255 * rgba[j + 1]
        b = avg_b * (1 - alpha) + alpha / 255 * rgba[j + 2]
        lum.append((r + g + b) / 3)
        p.append((r + g) / 2 - b)
        q.append(r - g)
        a.append(alpha)
    l_dc, l_ac, l_scale = _channel(lum, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _channel(p, w, h, 3, 3)
    q_dc, q_ac, q_scale = _channel(q, w, h, 3, 3)
    a_dc, a_ac, a_scale = _channel(a, w, h, 5, 5) if has_alpha else (1.0, [], 1.0)
    landscape = w > h
    header24 = (round(63 * l_dc) | (round(31.5 + 31.5 * p_dc) << 6) | (round(31.5 + 31.5 * q_dc) << 12)
                | (round(31 * l_scale) << 18) | (has_alpha << 23))
    header16 = (ly if landscape else lx) | (round(63 * p_scale) << 3) | (round(63 * q_scale) << 9) | (landscape << 15)
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    if has_alpha:
        out.append(round(15 * a_dc) | (round(15 * a_scale) << 4))
    odd = False
    for f in [*l_ac, *p_ac, *q_ac, *(a_ac if has_alpha else [])]:
        u = round(15.0 * f)
        if odd:
            out[-1] |= u << 4
        else:
            out.append(u)
        odd = not odd
    return bytes(out)
