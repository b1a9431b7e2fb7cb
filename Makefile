# Everyday commands. `make up` runs the platform on this machine; `make test` is what CI runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Lives inside the venv, so a deleted venv also means a fresh install.
INSTALLED := $(VENV)/.closeloop-installed
# mypy gets only the top-level folders that hold Python files yet.
MYPY_DIRS := $(foreach dir,libs services tests bench contracts,$(if $(wildcard $(dir)/*.py $(dir)/*/*.py),$(dir)))

.PHONY: install test-tools browser-tools up test lint format schemas bench soak dlq-replay chaos clean

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

# Prometheus and promtool for the deploy tests, curl for the docs' examples: Debian's packages,
# installed when missing.
test-tools:
	tests/ensure-tools.sh

# Debian's Chromium and the browser SDKs pinned in tests/browser/package.json (npm), for the
# browser tests (the SDKs' and the console's), installed when missing.
browser-tools:
	tests/browser/ensure-installed.sh

# Broker, database, topics and every service until Ctrl-C. `make up ARGS=--fresh` empties the database.
up: install
	$(BIN)/python -m libs.devstack up $(ARGS)

# The suite on $(TEST_WORKERS) workers (pytest-xdist, each with its own embedded stack), then the
# short fault-injection run on its own, so that nothing else competes with it for the CPU.
# `make test ARGS=...` passes ARGS to the first part only. The slowest tests are listed.
TEST_WORKERS ?= 3
test: lint test-tools browser-tools
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not chaos" --durations=30 $(ARGS)
	CLOSELOOP_CHAOS_LONG=0 $(BIN)/pytest -m chaos tests/integration/chaos -s

# Fault injection alone: the long run (each fault three times, with more load around each);
# `make chaos CHAOS_LONG=0` for the short run that `make test` ends with.
CHAOS_LONG ?= 1
chaos: install
	CLOSELOOP_CHAOS_LONG=$(CHAOS_LONG) $(BIN)/pytest -m chaos tests/integration/chaos -s $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_DIRS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas: install
	$(BIN)/python -m contracts generate

# Every scenario on one embedded stack, one table at the end (~20 min on 2 cores); e.g.
# `make bench ARGS="ingest --events 20000"`. See docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench $(ARGS)

# The whole loop at a constant load (default 30 min at 100 behaviours/s), not part of `make test`:
# are table sizes, RSS and consumer lag flat after the warm-up? e.g. `make soak ARGS="--minutes 3"`.
# CSV and plot in bench/results/; see docs/fault-injection.md.
soak: install
	$(BIN)/python -m bench.soak $(ARGS)

dlq-replay: install
	$(BIN)/python -m libs.common.bus.dlq replay $(ARGS)

# Keeps the venv (slow to rebuild); removes the local stack's data, logs and every cache.
clean:
	rm -rf .devstack .mypy_cache .ruff_cache .pytest_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
