# lowlat developer entry points. Each target sets up the virtual environment on first use.
#   make run    the service on its simulated feed, with its telemetry API on :8000, for
#               $(DURATION) s; then what it measured
#   make test   the quality gate: system packages, ruff, then the whole test suite
#   make bench  the quick benchmark (trading-service bench --quick)
#   make lint   ruff

VENV ?= .venv
DURATION ?= 10
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/trading-service run --duration $(DURATION) --telemetry

test: $(STAMP)
	scripts/system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/trading-service bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
