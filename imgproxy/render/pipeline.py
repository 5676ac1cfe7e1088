"""The jobs, each a straight line of small steps.

``render`` decodes at the variant's size (shrink-on-load). ``render_many``
decodes once at the size of its largest target, keeps that in memory, and
resizes every other target from it: a JPEG is decoded at the smallest
shrink-on-load scale that still covers every target, so the smaller
variants are made from more pixels than they need, never fewer.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

from ..errors import ImgproxyError, Undecodable
from .encode import encode
from .jobs import Fanned, FanoutJob, MetaJob, Probed, ProbeJob, Rendered, RenderJob
from .plan import Plan, make_plan, scale_of
from .source import map_vips_error, probe
from .steps import PIPELINE, load, load_shared, resize


@contextmanager
def _mapped() -> Iterator[None]:
    """Decoder errors become 415/422 where they enter."""
    try:
        yield
    except pyvips.Error as exc:
        raise map_vips_error(exc) from None
    except UnicodeError as exc:
        # A metadata string pyvips decoded as UTF-8 (metadata.py reads the
        # ones we need safely; this catches any other path to the same bug).
        raise Undecodable("the original's metadata is malformed", internal=str(exc)[:200]) from None
    except (struct.error, zlib.error, EOFError) as exc:
        # Binary parsing of an original's bytes outside libvips (ICC tags,
        # TIFF IFDs, plugin decoders) that ran off its end.
        raise Undecodable("the original is truncated or malformed", internal=repr(exc)[:200]) from None


def _finish(image: pyvips.Image, plan: Plan) -> Rendered:
    for step in PIPELINE:
        image = step(image, plan)
    return Rendered(body=encode(image, plan), width=image.width, height=image.height)


def render(job: RenderJob) -> Rendered:
    with _mapped():
        header, source = probe(job.source, job.limits)
        plan = make_plan(header, job.preset, job.fmt, job.limits, avif_effort=job.avif_effort, focus=job.focus)
        return _finish(load(source, header, plan), plan)


def render_many(job: FanoutJob) -> Fanned:
    """Every target of ``job`` from one decode per frame count (animated or not).

    A failure of the original (unreadable, over a source limit) raises; a
    failure of one target (over the output limit, an encoder error) is that
    target's result, and the others still render.
    """
    with _mapped():
        header, source = probe(job.source, job.limits)
    results: list[Rendered | ImgproxyError | None] = [None] * len(job.targets)
    plans: dict[int, Plan] = {}
    for i, (preset, fmt) in enumerate(job.targets):
        try:
            plans[i] = make_plan(header, preset, fmt, job.limits, avif_effort=job.avif_effort, focus=job.focus)
        except ImgproxyError as exc:
            results[i] = exc
    for frames in sorted({plan.frames for plan in plans.values()}):
        group = {i: plan for i, plan in plans.items() if plan.frames == frames}
        scale = max(scale_of(header, plan) for plan in group.values())
        with _mapped():
            base = load_shared(source, header, min(scale, 1.0), frames)
        for i, plan in group.items():
            try:
                with _mapped():
                    results[i] = _finish(resize(base, plan), plan)
            except ImgproxyError as exc:
                results[i] = exc
    return Fanned(tuple(r for r in results if r is not None))


def probe_original(job: ProbeJob) -> Probed:
    with _mapped():
        header, _ = probe(job.source, job.limits)
    width, height = header.upright  # what every variant and /meta/ show, not the stored pixel grid
    return Probed({"loader": header.loader, "width": width, "height": height,
                   "frames": header.frames, "icc": header.icc, "alpha": header.alpha})


def describe(job: MetaJob) -> Probed:
    """The metadata document (:mod:`.describe`)."""
    from .describe import document

    with _mapped():
        return Probed(document(job))


__all__ = ["describe", "probe_original", "render", "render_many"]
