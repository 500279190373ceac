# lowlat developer entry points. Each target sets up the virtual environment on first use.
#   make run    the service on its simulated feed for $(DURATION) s, with its telemetry API and
#               live dashboard on http://127.0.0.1:8000; then what it measured, and its
#               report in $(REPORT)/
#   make test   the quality gate: system packages, ruff, import rules, mypy, the whole suite
#   make bench  the quick benchmark (trading-service bench --quick)
#   make lint   ruff and the import rules (lint-imports)
#   make fmt    ruff's formatter and its safe fixes, in place
#   make typecheck  mypy (strict on contracts/ and ops/)
#   make synth  the CDK app's CloudFormation templates into cdk.out/ (offline, no AWS credentials)
#   make checkov  checkov, in its own venv under tools/checkov-venv (tests/infra/test_checkov.py)
#   make lab    boot a real arm64 lowlat host under QEMU and run the product against it
#               (docs/lab.md; lab-results/summary.json)
#   make lab-ci the lab's steps CI runs after the unit tests (LAB_CI_STEPS)

VENV ?= .venv
DURATION ?= 60
REPORT ?= run-report
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# The CDK CLI, pinned: npm's `latest` (3.x) cannot read the cloud assembly aws-cdk-lib 2.275 writes
CDK_CLI_VERSION := 2.1148.1
CDK_CLI := tools/cdk-cli/node_modules/.bin/cdk
# checkov, pinned, in a venv of its own: every 3.x pins networkx<2.7, the recent ones also
# boto3==1.35.49 and packaging<24 (pytest 9 needs >=24): none installs into .venv without downgrades
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := tools/checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: run test bench lint fmt typecheck setup synth cdk-cli checkov lab lab-ci

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/trading-service run --duration $(DURATION) --telemetry --report $(REPORT)
	@echo "the run's report: $(abspath $(REPORT))/performance_summary.png, statistics.txt, ..."

test: $(STAMP)
	scripts/system-deps
	$(MAKE) --no-print-directory cdk-cli
	$(MAKE) --no-print-directory checkov
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
LAB_CI_STEPS = image,boot,deploy,check_host,prometheus
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

# A stamp per version: changing CHECKOV_VERSION rebuilds the venv. The venv ignores itself in git.
checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	echo '*' > $(CHECKOV_VENV)/.gitignore
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

synth: $(STAMP) cdk-cli
	CDK_DISABLE_CLI_TELEMETRY=true $(CDK_CLI) synth --no-notices --quiet
