# Every target creates or reuses the environment in .venv first.
# Run-time state (world, warehouse, Airflow home, ledger) lives under OMNI_HOME (default .omni/).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export OMNI_HOME ?= $(CURDIR)/.omni

.PHONY: install demo test lint airflow bench clean chromium cxx

install: $(STAMP)

$(STAMP): requirements/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP) cxx
	$(BIN)/omni demo

test: $(STAMP) lint chromium cxx
	$(BIN)/python -m pytest

# The report test (tests/measurement) renders the HTML report in headless Debian chromium.
chromium:
	scripts/install-chromium

# The predictions model (pymc-marketing -> pytensor) compiles C++: Debian g++ when missing.
cxx:
	scripts/install-cxx

lint: $(STAMP)
	$(BIN)/ruff check orchestration dags tests
	$(BIN)/ruff format --check orchestration dags tests
	$(BIN)/mypy orchestration dags

airflow: $(STAMP) cxx
	$(BIN)/omni airflow

bench: $(STAMP) cxx
	$(BIN)/python -m orchestration.bench

clean:
	rm -rf $(OMNI_HOME) dbt_project/target dbt_project/logs
