"""The README stays true: every setting, preset and command it promises exists."""

from dataclasses import fields
from pathlib import Path

from imgproxy.config import Settings
from imgproxy.presets import load_presets

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    for f in fields(Settings):
        row = next((line for line in README.splitlines() if line.startswith(f"| `IMGPROXY_{f.name.upper()}` |")), None)
        assert row is not None, f.name
        assert f.metadata["description"] in row, f.name
        if f.default not in ((), "", False):
            assert f"`{f.default}`" in row, f.name


def test_every_preset_is_documented():
    for name in load_presets(ROOT / "config" / "presets.toml"):
        assert f"`{name}`" in README, name


def test_the_two_commands_come_first():
    head = README[:600]
    assert "make run" in head and "make test" in head
