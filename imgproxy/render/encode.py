"""Encode a variant with its format's saver and options (:mod:`imgproxy.formats`).

``keep="none"`` drops EXIF, XMP, IPTC and the ICC profile: pixels are already
sRGB, and a browser assumes sRGB when there is no profile. A preset with
``strip = false`` keeps them (GPS is removed by a pipeline step first).
"""

from __future__ import annotations

import pyvips

from ..formats import OUTPUTS
from .plan import Plan


def encode(image: pyvips.Image, plan: Plan) -> bytes:
    fmt = OUTPUTS[plan.fmt]
    options = dict(fmt.options)
    if fmt.lossy:
        options["Q"] = plan.quality
    options["keep"] = "none" if plan.strip else "exif,xmp,iptc,icc"
    body: bytes = getattr(image, fmt.saver)(**options)
    return body
