"""One-off measuring tools (``python -m bench.profilers.NAME``), on the harness only."""
