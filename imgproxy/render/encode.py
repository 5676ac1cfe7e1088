"""Encode a variant with its format's saver and options (:mod:`imgproxy.formats`).

``keep="none"`` drops EXIF, XMP, IPTC and the ICC profile: pixels are already
sRGB, and a browser assumes sRGB when there is no profile. A preset with
``strip = false`` keeps them (GPS is removed by a pipeline step first).

On top of the format's fixed options, the plan sets the quality (or searches
it, for ``quality = "auto"``: :mod:`.autoquality`), the chroma subsampling
where the format has one (``subsample_mode``: 4:2:0 unless the preset asks
for 4:4:4) and the AVIF effort of the job's path.
"""

from __future__ import annotations

import pyvips

from ..formats import OUTPUTS
from .autoquality import choose
from .plan import Plan


def encode(image: pyvips.Image, plan: Plan) -> bytes:
    if plan.target is not None and OUTPUTS[plan.fmt].lossy:
        return choose(image, plan.fmt, plan.target, lambda im, q: encode_at(im, plan, q)).body
    return encode_at(image, plan, plan.quality)


def encode_at(image: pyvips.Image, plan: Plan, quality: int) -> bytes:
    fmt = OUTPUTS[plan.fmt]
    options = dict(fmt.options)
    if fmt.lossy:
        options["Q"] = quality
    if "subsample_mode" in options and plan.chroma == "444":
        options["subsample_mode"] = "off"
    if plan.effort is not None and "effort" in options:
        options["effort"] = plan.effort
    options["keep"] = "none" if plan.strip else "exif,xmp,iptc,icc"
    body: bytes = getattr(image, fmt.saver)(**options)
    return body
