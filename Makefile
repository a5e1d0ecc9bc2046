# Two entry points do all set-up on a fresh machine (Python 3.11, make, node, npm):
#   make demo   virtualenv + pinned runtime, then the local federation on the embedded synthetic data
#   make test   virtualenv + pinned dev tools + the pinned CDK CLI + checkov, then linters and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# uv (pinned in constraints.txt, a Flower dependency) installs the pins: on a fresh machine both of the project's
# installs take about 31 s with it and 92 s with pip, byte-compiled alike
UV := $(VENV)/bin/uv
INSTALL := $(UV) pip install --quiet --compile-bytecode
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
CLI := node_modules/.cli-installed
# checkov pins packages the project pins otherwise: it gets a virtualenv of its own
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/.installed
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# steps that do not depend on each other run side by side (npm, checkov's virtualenv, the code bundle, the type check
# beside the suite), their output line by line as it comes
MAKEFLAGS += --jobs=2 --output-sync=line

.PHONY: demo test suite lint style types bench bench-scaling compare synth bundle bundle-locks constraints clean

demo: $(RUNTIME)
	$(PY) -m fl_runtime local

# four workers on two cores (much of the suite waits on Flower processes: 8:17 against 9:39 with three), each taking whole test files
# (module fixtures such as one finished run are built once; the stack modules sharing the deployment synths go to one
# worker together: tests/conftest.py). The type check (about a minute, most of it the CDK
# library's types) runs beside the suite rather than before it; either failing fails `make test`.
TEST_WORKERS ?= 4
test: style types suite

suite: style $(CLI) $(CHECKOV) bundle
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# ruff (lint + format check), then mypy on the runtime and the CDK app
lint: style types

style: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(DEV)
	$(VENV)/bin/mypy

bench: $(RUNTIME)
	$(PY) bench/bench_local.py --repeat 2
	$(PY) bench/bench_relay.py --repeat 2

# 10^4, 10^5 and 10^6 synthetic rows per client, 3 clients, 5 rounds, twice each (about 10 minutes on two cores)
bench-scaling: $(RUNTIME)
	$(PY) bench/bench_scaling.py --repeat 2

compare: $(RUNTIME)
	$(PY) -m fl_runtime compare --data ../shared/data/cms_provider_fraud.csv --seeds 0 1 2 3 4

synth: $(DEV) $(CLI)
	npx cdk synth --no-notices -q

# the code bundle every synth puts into the client stacks (a fresh machine downloads its wheels: about 40 s), built
# before the suite rather than by the first test that synthesizes while the others wait on it
bundle: $(RUNTIME)
	$(PY) -m stacks.bundle.builder

# after editing stacks/bundle/requirements-*.in or the training image in cdk.json
bundle-locks: $(DEV)
	$(PY) -m stacks.bundle.lock

$(PY):
	$(PYTHON) -m venv $(VENV)

$(UV): constraints.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet uv -c constraints.txt
	touch $@

$(RUNTIME): requirements.txt constraints.txt $(UV)
	$(INSTALL) --python $(PY) -r requirements.txt -c constraints.txt
	touch $@

$(DEV): requirements-dev.txt $(RUNTIME)
	$(INSTALL) --python $(PY) -r requirements-dev.txt -c constraints.txt
	touch $@

$(CHECKOV): requirements-checkov.txt $(UV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(INSTALL) --python $(CHECKOV_VENV)/bin/python -r requirements-checkov.txt
	touch $@

$(CLI): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Regenerate the full pin list after changing requirements*.txt.
constraints: $(DEV)
	(echo "# Every package of the dev environment, pinned (generated with pip freeze; regenerate with 'make constraints')."; \
	 $(PY) -m pip freeze --exclude-editable) > constraints.txt

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out runs .pytest_cache
