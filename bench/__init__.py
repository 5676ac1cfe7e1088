"""Benchmark harness: ``python -m bench`` (see docs/BENCHMARKS.md)."""
