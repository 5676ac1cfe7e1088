"""The ``imgproxy`` command (:mod:`.main`) and what only it uses."""

from .main import main

__all__ = ["main"]
