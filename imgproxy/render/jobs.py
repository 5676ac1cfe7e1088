"""The jobs a render worker runs, and what each returns: a small tagged set.

    RenderJob   one variant                                -> Rendered
    FanoutJob   several (preset, format) from one decode   -> Fanned
    ProbeJob    the header and metadata, no pixels         -> Probed
    MetaJob     the metadata document (EXIF, placeholders) -> Probed (``info`` is the document)

Jobs are frozen and picklable (the server sends them to its workers);
results cross back as JSON plus raw bytes (:mod:`imgproxy.workers.codec`).
Nothing here imports libvips: the server builds jobs without loading a decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ImgproxyError
from ..presets import Preset
from .plan import Limits


@dataclass(frozen=True)
class Source:
    """An original: a local path (no copy) or bytes fetched from a remote store."""

    path: str | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class RenderJob:
    source: Source
    preset: Preset
    fmt: str
    limits: Limits
    avif_effort: int | None = None  # None: the format's own (formats.py)
    focus: tuple[float, float] | None = None  # a focal point for a cover crop


@dataclass(frozen=True)
class FanoutJob:
    source: Source
    targets: tuple[tuple[Preset, str], ...]  # (preset, format) pairs
    limits: Limits
    avif_effort: int | None = None  # eager renders may spend more (IMGPROXY_AVIF_EAGER_EFFORT)
    focus: tuple[float, float] | None = None  # the original's focal point, for every cover target


@dataclass(frozen=True)
class ProbeJob:
    source: Source
    limits: Limits


@dataclass(frozen=True)
class MetaJob:
    source: Source
    limits: Limits
    gps: bool = False  # read the location too (off: it never leaves the worker)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Fanned:
    """One result per target, in order: a variant, or why that variant failed."""

    results: tuple[Rendered | ImgproxyError, ...]


@dataclass(frozen=True)
class Probed:
    info: dict[str, Any] = field(default_factory=dict)


Job = RenderJob | FanoutJob | ProbeJob | MetaJob
Result = Rendered | Fanned | Probed
