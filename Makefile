# make run   - start imgproxy on the embedded default (README.md: "make run")
# make test  - lint, type-check and run the whole suite
# make check - lint, type-check and the tests that start no process (the fast loop while editing)
# make soak  - fault soak: Zipf traffic with hostile originals and injected faults (bench/soak.py)
# make bench - run the benchmarks, writes docs/BENCHMARKS.md (docs/DEVELOPMENT.md: "Benchmarks")
# make docs  - write docs/SETTINGS.md from imgproxy/config.py's Settings (tests/test_readme.py checks it)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test check bench soak docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What running needs; the test extras come on top for test and bench.
$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(STAMP_RUN)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP_RUN) $(STAMP)

# Host and port come from the settings (IMGPROXY_HOST, IMGPROXY_PORT, config/imgproxy.toml);
# `make run PORT=9000` overrides the port.
run: $(STAMP_RUN)
	$(BIN)/imgproxy serve $(if $(PORT),--port $(PORT))

test: $(STAMP)
	$(BIN)/ruff check imgproxy tests bench loadtest
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra -n 3 --dist loadfile

# Tests that start a server, origin, moto or browser are marked `server` (tests/conftest.py);
# IMGPROXY_TESTS_NO_SERVERS fails any that starts one without the mark.
check: $(STAMP)
	$(BIN)/ruff check imgproxy tests bench loadtest
	$(BIN)/mypy
	IMGPROXY_TESTS_NO_SERVERS=1 $(BIN)/python -m pytest -q -m "not slow and not server"

bench: $(STAMP)
	$(BIN)/python -m bench

# Fault soak (minutes, not CI): hostile files, worker kills, an S3 pause, a read-only store.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS))

# The settings reference is generated, never written by hand; the file is checked in.
docs: $(STAMP_RUN)
	$(BIN)/python -m imgproxy.config > docs/SETTINGS.md

clean:
	rm -rf $(VENV) data
