"""Which formats this libvips (and its plugins) really decode and encode, found by trying.

Run as ``python -m imgproxy.render.capabilities`` (``imgproxy doctor`` does,
in a subprocess, so a crashing codec cannot take the doctor with it). It
prints one JSON object: ``{"libvips": ..., "inputs": {name: status},
"outputs": {fmt: status}}``, where a status is ``ok``, ``fail: <why>`` or
``untested: <why>``. Inputs are tiny images made here, rendered through the
same pipeline and loader block list as a worker; outputs are a render of a
tiny PNG in each output format, decoded again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..formats import OUTPUTS
from ..presets import Preset
from .jobs import Rendered, RenderJob, Source
from .plan import Limits

_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="12">'
        b'<rect width="16" height="12" fill="#c33"/></svg>')
_PRESET = Preset(name="doctor", width=8, height=8)


def _image() -> Any:
    import pyvips

    xy = pyvips.Image.xyz(16, 12)
    return (xy[0] * 16).bandjoin([xy[1] * 20, xy[0] * 8]).cast("uchar").copy(interpretation="srgb")


def _makers() -> dict[str, Callable[[Any], bytes]]:
    return {
        "jpeg": lambda im: im.jpegsave_buffer(),
        "png": lambda im: im.pngsave_buffer(),
        "webp": lambda im: im.webpsave_buffer(),
        "gif": lambda im: im.gifsave_buffer(),
        "avif": lambda im: im.heifsave_buffer(compression="av1"),
        "tiff": lambda im: im.tiffsave_buffer(),
        "svg": lambda im: _SVG,
    }


def _render(data: bytes, fmt: str) -> Rendered:
    from . import render

    return render(RenderJob(Source(data=data), _PRESET, fmt, Limits()))


def _tried(data: bytes, fmt: str) -> str:
    """``ok`` if ``data`` renders to ``fmt`` and the result decodes again."""
    try:
        _decoded(_render(data, fmt))
    except Exception as exc:
        return f"fail: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return "ok"


def capabilities() -> dict[str, Any]:
    import pyvips

    from . import configure

    image = _image()
    samples: dict[str, bytes | str] = {}
    for name, make in _makers().items():
        try:
            samples[name] = make(image)
        except Exception as exc:  # no encoder to make a sample with: we cannot tell
            samples[name] = f"untested: cannot make a sample ({str(exc).strip().splitlines()[0]})"
    configure(1)  # the worker's block list: only our loaders are reachable
    inputs = {name: sample if isinstance(sample, str) else _tried(sample, "png") for name, sample in samples.items()}
    inputs["heic (hevc)"] = _hevc()
    png = samples["png"]
    outputs = {fmt: _tried(png, fmt) if isinstance(png, bytes) else "untested: no PNG sample" for fmt in OUTPUTS}
    version = ".".join(str(pyvips.version(i)) for i in range(3))
    return {"libvips": version, "inputs": inputs, "outputs": outputs}


def _decoded(rendered: Rendered) -> None:
    import pyvips

    image = pyvips.Image.new_from_buffer(rendered.body, "")
    if image.width < 1 or image.avg() < 0:
        raise ValueError("decoded to nothing")


def _hevc() -> str:
    """pi-heif decodes iPhone HEIC; there is no HEVC encoder here to make a sample with."""
    try:
        import pi_heif

        decoders = pi_heif.libheif_info().get("decoders", {})
    except Exception as exc:
        return f"fail: pi_heif: {exc}"
    if not any("hevc" in str(d).lower() or "265" in str(d) for d in (*decoders, *decoders.values())):
        return "fail: pi_heif has no HEVC decoder"
    return "untested: pi_heif has an HEVC decoder; no HEVC encoder here to make a sample"


if __name__ == "__main__":
    print(json.dumps(capabilities()))
