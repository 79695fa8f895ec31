# Every target bootstraps .venv from requirements.lock (idempotent: a stamp file
# records that the lock and pyproject were installed; nothing is reinstalled unless
# one of them changed).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.9.5

# Airflow lives inside the repository (git-ignored): SQLite metadata DB,
# LocalExecutor sized for a 2-core machine, example DAGs off.
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG := 4
export AIRFLOW__SCHEDULER__PARSING_PROCESSES := 1
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES := 1
export AIRFLOW__CORE__TEST_CONNECTION := Enabled
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test lint demo airflow bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check include dags plugins tests scripts

demo: $(STAMP)
	$(BIN)/python -m threekit_pipeline.demo

airflow: $(STAMP)
	$(BIN)/python -m threekit_pipeline.demo --standalone

bench: $(STAMP)
	$(BIN)/python -m threekit_pipeline.bench

# Re-resolve the lock from requirements.txt (needs PyPI).
lock: $(STAMP)
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable | grep -v '^uv==' > requirements.lock

clean:
	rm -rf $(AIRFLOW_HOME) .staging .demo .bench .pytest_cache
