"""Benchmarks: ``python -m bench`` (docs/BENCHMARKS.md); the layout is drawn in docs/ARCHITECTURE.md."""
