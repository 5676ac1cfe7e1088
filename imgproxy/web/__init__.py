"""The web layer: HTTP in and out. Nothing below it knows about headers.

- :mod:`.endpoint`: ``GET|HEAD /v/...``, the variant endpoint (plain ASGI).
- :mod:`.responses`: response headers of variants (built once, cached) and
  JSON error bodies.
"""
