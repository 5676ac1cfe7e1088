"""Fan-out jobs' vocabulary: what to make of one original, and what a job did.

A fan-out makes every missing variant of one original from one decode, each
exactly once, beside live traffic; :meth:`VariantService.fan_out
<imgproxy.variants.VariantService.fan_out>` runs it on the one render path that
live misses take. Warm-ups, queue jobs and an upload's eager renders name
their targets with :func:`targets_of`; a 5xx is worth running again, a 4xx
is not (:func:`transient`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import BadRequest, ImgproxyError, NotFound
from ..formats import FORMATS
from ..presets import Preset

#: One variant to make: a preset and an output format.
Target = tuple[Preset, str]


@dataclass
class FanOut:
    """What one job did, by variant key."""

    id: str
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, ImgproxyError] = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        return any(transient(exc) for exc in self.failed.values())


def transient(exc: ImgproxyError) -> bool:
    """Worth running again: the store, origin or worker failed, not the original (a 4xx is poison)."""
    return exc.status >= 500


def cost(target: Target) -> tuple[bool, int]:
    """A rough order of render cost: AVIF last, then by output box."""
    preset, fmt = target
    return fmt == "avif", preset.width * preset.height


def targets_of(presets: Mapping[str, Preset], names: Sequence[str], formats: Sequence[str]) -> list[Target]:
    """Every (preset, format) pair; an unknown preset or format is the job's fault (4xx)."""
    unknown = [name for name in names if name not in presets]
    if unknown:
        raise NotFound(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(presets)}")
    bad = [fmt for fmt in formats if fmt not in FORMATS]
    if bad:
        raise BadRequest(f"unknown format(s) {', '.join(bad)}; known: {', '.join(FORMATS)}")
    return [(presets[name], fmt) for name in dict.fromkeys(names) for fmt in dict.fromkeys(formats)]
