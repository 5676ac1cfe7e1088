"""Variants made once: the service (memory, store, lease, render, put), fan-outs, uploads."""
