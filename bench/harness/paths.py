"""Where things are: the checkout, the shared test images, the presets, the thumbor venv."""

from __future__ import annotations

from pathlib import Path

MAIN = Path(__file__).resolve().parents[2]  # the checkout: imgproxy/, bench/, config/, docs/
TESTIMAGES = MAIN.parent / "shared" / "testimages"
LARGE = TESTIMAGES / "large" / "mei__Issue_266.jpg"  # 5760×3840, 22 MP
#: The bench's own presets (fit512, thumb200, fit1024) and the shipped ones (web, thumbnail, dalle, ...).
BENCH_PRESETS = MAIN / "bench" / "presets.toml"
CONFIG_PRESETS = MAIN / "config" / "presets.toml"
THUMBOR_VENV = MAIN / "bench" / ".venv-thumbor"
RESULTS = MAIN / "bench" / "results" / "latest.json"
