"""One module per benchmark case; each imports only bench.harness (never another case)."""
