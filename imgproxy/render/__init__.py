"""Render one variant: synchronous, no web or store imports.

``render(job)`` is the seam the server calls from a worker thread or process:
probe the header, plan, decode at size, run the steps, encode.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyvips

from ..errors import Undecodable
from ..presets import Preset
from .encode import encode
from .plan import Limits, Plan, make_plan
from .source import Source, map_vips_error, probe
from .steps import PIPELINE, load

ALLOWED_LOADERS = (
    "VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp", "VipsForeignLoadNsgif",
    "VipsForeignLoadHeif", "VipsForeignLoadTiff", "VipsForeignLoadSvg",
)

__all__ = ["Limits", "Plan", "RenderJob", "Rendered", "Source", "configure", "render"]


@dataclass(frozen=True)
class RenderJob:
    source: Source
    preset: Preset
    fmt: str
    limits: Limits


@dataclass(frozen=True)
class Rendered:
    body: bytes
    width: int
    height: int


def configure(concurrency: int = 1) -> None:
    """Process-wide libvips settings; call once per process before rendering.

    The operation cache is off: every variant is rendered once and then stored,
    so cached operations would only hold memory.
    """
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.concurrency_set(concurrency)
    # Only the decoders we serve are reachable from untrusted bytes; libvips'
    # raw, matrix, CSV, FITS and the like could otherwise be reached by sniffing.
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)


def render(job: RenderJob) -> Rendered:
    try:
        header, source = probe(job.source, job.limits)
        plan = make_plan(header, job.preset, job.fmt, job.limits)
        image = load(source, header, plan)
        for step in PIPELINE:
            image = step(image, plan)
        body = encode(image, plan)
    except pyvips.Error as exc:
        raise map_vips_error(exc) from None
    except UnicodeError:
        # A metadata string pyvips decoded as UTF-8 (metadata.py reads the
        # ones we need safely; this catches any other path to the same bug).
        raise Undecodable("the original's metadata is malformed") from None
    return Rendered(body=body, width=image.width, height=image.height)
