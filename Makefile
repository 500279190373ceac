# lowlat developer entry points. Each target sets up the virtual environment on first use.
#   make run    the service on its simulated feed, with its telemetry API on :8000, for
#               $(DURATION) s; then what it measured
#   make test   the quality gate: system packages, ruff, import rules, mypy, the whole suite
#   make bench  the quick benchmark (trading-service bench --quick)
#   make lint   ruff and the import rules (lint-imports)
#   make fmt    ruff's formatter and its safe fixes, in place
#   make typecheck  mypy (strict on contracts/ and ops/)
#   make synth  the CDK app's CloudFormation templates into cdk.out/ (offline, no AWS credentials)
#   make lab    boot a real arm64 lowlat host under QEMU and run the product against it
#               (docs/lab.md; lab-results/summary.json)
#   make lab-ci the lab's steps CI runs after the unit tests (LAB_CI_STEPS)

VENV ?= .venv
DURATION ?= 10
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# The CDK CLI, pinned: npm's `latest` (3.x) cannot read the cloud assembly aws-cdk-lib 2.275 writes
CDK_CLI_VERSION := 2.1148.1
CDK_CLI := tools/cdk-cli/node_modules/.bin/cdk

.PHONY: run test bench lint fmt typecheck setup synth cdk-cli lab lab-ci

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
	$(MAKE) --no-print-directory cdk-cli
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest

lab: $(STAMP)
	scripts/lab-deps
	$(MAKE) --no-print-directory cdk-cli
	flock /tmp/lowlat-spin.lock $(VENV)/bin/python -m lab $(LAB_ARGS)

# What CI runs of the lab after the unit tests (the whole lab would pass CI's hour).
LAB_CI_STEPS = image,boot,deploy,check_host,prometheus,rollback
lab-ci:
	$(MAKE) --no-print-directory lab LAB_ARGS="--steps $(LAB_CI_STEPS)"

bench: $(STAMP)
	$(VENV)/bin/trading-service bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Installed on first use when npm is there; without npm, tests/infra/test_cdk_cli.py skips and says why.
cdk-cli:
	@if [ -x $(CDK_CLI) ]; then :; \
	elif command -v npm >/dev/null; then \
		npm install --silent --no-audit --no-fund --prefix tools/cdk-cli aws-cdk@$(CDK_CLI_VERSION); \
	else echo "cdk-cli: npm not found; the CDK CLI test will skip (apt-get install npm)" >&2; fi

synth: $(STAMP) cdk-cli
	CDK_DISABLE_CLI_TELEMETRY=true $(CDK_CLI) synth --no-notices --quiet
