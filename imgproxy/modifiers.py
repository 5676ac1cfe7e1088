"""Per-URL art direction: a ladder width and a focal point, in the path.

    /v/<preset>[@w<width>][@f<x>x<y>]/<id>.<fmt>?s=<signature>

    /v/card@w640/shop/42.webp              640 wide, from card's ladder
    /v/thumb-square@f0.8x0.3/shop/42.webp  crop around (0.8, 0.3)
    /v/card@w640@f0.8x0.3/shop/42.webp     both, always in this order

They live in the path, not the query, so the signature (over the path after
``/v/``), the CDN cache key (the path and ``s``; ``deploy/`` drops every other
parameter) and the variant key all cover them with no change.

One URL per variant: a width has no leading zero; a focal coordinate is a
fraction 0..1 with at most three decimals and no trailing zero (``0``,
``0.5``, ``0.125``, ``1``), so ``0.50`` or ``.5`` is a 400, not a second URL.
``x`` separates the coordinates (a comma would need care in ``srcset``).
"""

from __future__ import annotations

import re

from .errors import BadRequest
from .presets import Preset

Focus = tuple[float, float]

_WIDTH = re.compile(r"^w([1-9][0-9]{0,4})$")
_FRACTION = r"(0|1|0\.[0-9]{0,2}[1-9])"
_FOCUS = re.compile(rf"^f{_FRACTION}x{_FRACTION}$")


def parse_modifiers(parts: list[str]) -> tuple[int | None, Focus | None]:
    """``["w640", "f0.8x0.3"]`` (the ``@``-separated rest of the preset segment)."""
    width: int | None = None
    focus: Focus | None = None
    rest = list(parts)
    if rest and (m := _WIDTH.fullmatch(rest[0])):
        width = int(m.group(1))
        rest.pop(0)
    if rest and (m := _FOCUS.fullmatch(rest[0])):
        focus = (float(m.group(1)), float(m.group(2)))
        rest.pop(0)
    if rest:
        raise BadRequest("after the preset: @w<width> then @f<x>x<y> (fractions 0..1, e.g. @f0.8x0.3)")
    return width, focus


def format_modifiers(width: int | None, focus: Focus | None) -> str:
    """The canonical spelling: ``@w640@f0.8x0.3``, or ``""``."""
    text = ""
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise BadRequest("width must be a positive integer")
        text += f"@w{width}"
    if focus is not None:
        x, y = (_fraction(v) for v in focus)
        text += f"@f{x}x{y}"
    return text


def parse_focus(text: str) -> Focus:
    """``"0.8,0.3"`` (the command line's and helpers' spelling) to a point."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise BadRequest(f"focus {text!r}: expected x,y fractions, e.g. 0.8,0.3") from None
    return x, y


def _fraction(value: float) -> str:
    if not 0 <= value <= 1:
        raise BadRequest(f"focal point coordinate {value} is not in 0..1")
    return f"{round(value, 3):.3f}".rstrip("0").rstrip(".")


def check_modifiers(width: int | None, focus: Focus | None, preset: Preset) -> None:
    """What the preset allows: a width from its ladder, a focal point when it crops."""
    if width is not None and width not in preset.widths:
        allowed = ", ".join(map(str, preset.widths)) or "none"
        raise BadRequest(f"width {width} is not in preset {preset.name!r}'s widths ({allowed})")
    if focus is not None and preset.fit != "cover":
        raise BadRequest(f"preset {preset.name!r} does not crop (fit = {preset.fit!r}); "
                         "a focal point needs fit = 'cover'")
