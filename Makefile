# Every target creates .venv and installs the project when missing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint format install tools clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/rdb24 up

# Tools the tests call that pip cannot install: promtool (tests/deploy checks the alert rules with it),
# from the Debian package prometheus. Under CI=true a failed install fails the build; locally it warns
# and those tests skip.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "promtool missing: installing the Debian package prometheus"; \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; } \
	  || { echo "could not install promtool (apt-get install prometheus)"; [ "$$CI" != true ]; }; }

# Tests mostly wait on real servers and processes, so a few xdist workers overlap those waits even on
# two cores; --dist loadgroup keeps each module (and tests/security) on one worker (tests/support/parallel_run.py).
TEST_WORKERS ?= 3
test: $(STAMP) tools
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The tests that start no process of their own (no worker, ingest, webhook, `rdb24 up`, own Redis or
# fault stack: marker `process`, tests/support/process_marker.py), on the session's Redis and Kafka.
# Under a minute, for the edit-test loop; `make test` stays the gate. Two xdist workers overlap the Kafka
# client tests' group-join waits with the rest.
FAST_WORKERS ?= 2
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not process" -n $(FAST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Style, format, types (pyproject.toml [tool.mypy]) and the layer contracts ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
