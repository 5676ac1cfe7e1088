"""Rendering: synchronous, no web or store imports.

``run_job(job)`` is the seam the server calls from a worker thread or
process (:mod:`.jobs` lists the jobs; :mod:`.pipeline` runs them). Each job
probes the header, plans from it, decodes at size, runs the steps and
encodes. This package's top level does not import libvips, so a server
that renders in worker processes never loads a decoder itself.
"""

from __future__ import annotations

from ..formats import INPUTS
from .jobs import Fanned, FanoutJob, Job, MetaJob, Probed, ProbeJob, Rendered, RenderJob, Result, Source
from .plan import Limits, Plan

__all__ = [
    "MIN_LIBVIPS",
    "Fanned",
    "FanoutJob",
    "Job",
    "Limits",
    "MetaJob",
    "Plan",
    "ProbeJob",
    "Probed",
    "RenderJob",
    "Rendered",
    "Result",
    "Source",
    "configure",
    "render",
    "run_job",
]


#: Savers' ``keep`` and thumbnail's ``output_profile`` arrived in 8.15. With
#: Debian 12's 8.14 they are refused, GPS survived ``strip`` in WebP, and a
#: system libheif beside pi-heif's own crashed on HEIC; so older is refused.
MIN_LIBVIPS = (8, 15)


def configure(concurrency: int = 1) -> None:
    """Process-wide libvips settings; call once per process before rendering.

    The operation cache is off: every variant is rendered once and then stored,
    so cached operations would only hold memory.
    """
    import pyvips

    if not pyvips.at_least_libvips(*MIN_LIBVIPS):
        found = ".".join(str(pyvips.version(i)) for i in range(3))
        raise RuntimeError(f"libvips {found} is too old: imgproxy needs {MIN_LIBVIPS[0]}.{MIN_LIBVIPS[1]} "
                           "or newer (pip's pyvips[binary] brings one)")
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.concurrency_set(concurrency)
    # Only the decoders we serve are reachable from untrusted bytes (see formats.py).
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in INPUTS:
        pyvips.operation_block_set(loader.name, False)


def run_job(job: Job) -> Result:
    from .pipeline import describe, probe_original, render, render_many

    if isinstance(job, RenderJob):
        return render(job)
    if isinstance(job, FanoutJob):
        return render_many(job)
    if isinstance(job, MetaJob):
        return describe(job)
    return probe_original(job)


def render(job: RenderJob) -> Rendered:
    """One variant, in this thread (tests, benchmarks, thread mode)."""
    from .pipeline import render as render_one

    return render_one(job)
