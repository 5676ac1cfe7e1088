"""What this install can read and write, found by trying: each output encodes a
tiny image and decodes it back; each input decodes a tiny sample made here.
HEIC is the exception: nothing here encodes HEVC, so libheif is asked whether
it has an HEVC decoder ("has ..." when it does)."""

from __future__ import annotations

import io

import pyvips

from ..formats import INPUT_FORMATS, OUTPUTS
from ..presets import Preset
from .jobs import RenderJob, Source
from .plan import Limits

_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'


def _sample(fmt: str) -> bytes | None:
    image = (pyvips.Image.black(8, 8) + [200, 100, 50]).cast("uchar").copy(interpretation="srgb")
    savers = {"jpeg": "jpegsave_buffer", "png": "pngsave_buffer", "webp": "webpsave_buffer",
              "gif": "gifsave_buffer", "tiff": "tiffsave_buffer"}
    if fmt in savers:
        data: bytes = getattr(image, savers[fmt])()
        return data
    if fmt == "avif":
        avif: bytes = image.heifsave_buffer(compression="av1")
        return avif
    if fmt == "svg":
        return _SVG
    if fmt == "raw":
        from .probe_dng import probe_dng

        return probe_dng()
    if fmt == "jxl":
        import pillow_jxl  # noqa: F401
        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 100, 50)).save(out, format="JXL")
        return out.getvalue()
    return None


def _heic_decoder() -> str:
    """HEIC has no sample (no HEVC encoder here): libheif's own list of decoders."""
    import pi_heif

    info = pi_heif.libheif_info()
    hevc = [name for name in info["decoders"].values() if "HEVC" in name.upper()]
    if not hevc:
        return f"no (libheif {info['libheif']} has no HEVC decoder)"
    return f"has {hevc[0]} (libheif {info['libheif']}, pi-heif {pi_heif.__version__})"


def _libraw() -> str:
    from importlib.metadata import version

    import rawpy

    return f"rawpy {version('rawpy')}, LibRaw {'.'.join(str(part) for part in rawpy.libraw_version)}"


def inputs() -> dict[str, str]:
    """Input format -> "yes", "has <decoder>" (HEIC), or "no (why)"."""
    from .pipeline import render

    found = {}
    for fmt in INPUT_FORMATS:
        try:
            sample = _sample(fmt)
            if sample is None:
                found[fmt] = _heic_decoder() if fmt == "heic" else "no (nothing here makes a sample)"
            else:
                render(RenderJob(Source(data=sample), Preset("probe", 4, 4), "png", Limits()))
                found[fmt] = f"yes ({_libraw()})" if fmt == "raw" else "yes"
        except Exception as exc:  # reporting, not serving: any failure means "no"
            found[fmt] = f"no ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:80] if str(exc) else ''})"
    return found


def outputs() -> dict[str, str]:
    found = {}
    image = (pyvips.Image.black(8, 8) + [200, 100, 50]).cast("uchar").copy(interpretation="srgb")
    for fmt, out in OUTPUTS.items():
        try:
            body = getattr(image, out.saver)(**out.options)
            pyvips.Image.new_from_buffer(body, "").avg()
            found[fmt] = "yes"
        except Exception as exc:  # reporting, not serving
            found[fmt] = f"no ({type(exc).__name__})"
    for name, saver in (("jxl", "jxlsave_buffer"),):
        try:
            getattr(image, saver)()
            found[name] = "yes (not offered)"
        except Exception:  # reporting, not serving
            found[name] = "no"
    return found


def capabilities() -> dict[str, object]:
    """Everything above, as ``imgproxy doctor`` reads it from ``python -m imgproxy.render.capabilities``
    (in a subprocess, so a crashing codec cannot take the doctor with it)."""
    from . import configure

    configure(1)  # the workers' loader block list: only our loaders are reachable
    version = ".".join(str(pyvips.version(i)) for i in range(3))
    return {"libvips": version, "inputs": inputs(), "outputs": outputs()}


if __name__ == "__main__":
    import json

    print(json.dumps(capabilities()))
