# The two commands a new user needs: `make demo` and `make test`. Both set everything up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# uv from PATH, else the uv module of $(PYTHON) (installed with pip on first use)
UV ?= $(or $(shell command -v uv 2>/dev/null),$(PYTHON) -m uv)
export UV_PYTHON_DOWNLOADS := never

# Embedded installation: every piece of state under .retrain/
export RETRAIN_HOME ?= $(CURDIR)/.retrain
export RETRAIN_CONFIG_DIR ?= $(CURDIR)/configs
export AIRFLOW_HOME ?= $(RETRAIN_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN ?= sqlite:///$(AIRFLOW_HOME)/airflow.db
# pytest-xdist workers of `make test` (each has its own Airflow home and metadata DB)
TEST_WORKERS ?= 2
AIRFLOW_PORT ?= 8080
# task slots of `make up` (LocalExecutor: one worker process per slot; Airflow's default is 32)
AIRFLOW_PARALLELISM ?= 4
MLFLOW_PORT ?= 5000

.PHONY: help setup browser demo test test-fast test-production lint dags up airflow mlflow-ui clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/retrain: uv.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: installing it with pip"; $(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(BIN)/retrain  ## create .venv from uv.lock (installs uv if missing)

# The fleet page's browser test renders it in Debian's headless Chromium (no other browser
# build can be downloaded here). Installed with apt when we may; otherwise the exact command.
browser:  ## install Debian's chromium for the browser test (apt, as root)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the fleet page's browser test (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "the fleet page's browser test needs Debian's chromium: run  sudo apt-get install -y chromium  then make test again" >&2; \
	  exit 2; \
	fi

demo: setup  ## simulate data, run the DAGs day by day through Airflow, print the story
	$(BIN)/python -m retrain_demo.demo

test: setup browser lint  ## lint, then the whole test suite (unit, DAG integrity, integration, end to end)
	RETRAIN_STRICT=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not production" --durations=15

test-fast: setup  ## unit and DAG tests only
	RETRAIN_STRICT=1 $(BIN)/python -m pytest -m "not slow"

test-production: setup  ## docker-compose.yaml's topology, natively: Celery workers, PostgreSQL, Redis, MLflow, S3 (~5 min)
	RETRAIN_STRICT=1 $(BIN)/python -m pytest -m production tests/production

lint: setup  ## ruff check, ruff format --check (run `ruff format` to fix), the import contracts (retrain_lib never imports airflow; its layers import only downward; the plugin never imports the demo) and mypy on retrain_lib ([tool.mypy])
	$(BIN)/ruff check retrain_lib plugins dags tests benchmarks
	$(BIN)/ruff format --check retrain_lib plugins dags tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

dags: setup  ## one generated DAG file per model config (dags/models/<model>.py; stale ones removed)
	$(BIN)/retrain dags sync

up: setup dags  ## Airflow (api-server, scheduler, dag-processor, triggerer) on http://localhost:$(AIRFLOW_PORT)
	@case "$(AIRFLOW_PORT)" in 8793|8794) echo "AIRFLOW_PORT=$(AIRFLOW_PORT) is the port of Airflow's own log server ($(if $(filter 8793,$(AIRFLOW_PORT)),scheduler,triggerer)): the api-server could not bind it. Pick another port." >&2; exit 2;; esac
	@mkdir -p $(AIRFLOW_HOME)
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT)  (user admin; password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	@echo "MLflow UI:  make mlflow-ui  ->  http://localhost:$(MLFLOW_PORT)"
	PATH=$(BIN):$$PATH AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) \
	  AIRFLOW__CORE__PARALLELISM=$(AIRFLOW_PARALLELISM) \
	  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin $(BIN)/airflow standalone

# The airflow CLI on the same state as `make up` and `make demo` (AIRFLOW_HOME, DAGs and plugins
# folders, metadata DB, RETRAIN_HOME: the exports at the top of this file).
airflow: setup  ## the airflow CLI on the demo's state: make airflow ARGS="dags list"
	PATH=$(BIN):$$PATH $(BIN)/airflow $(ARGS)

mlflow-ui: setup  ## MLflow UI on the platform's store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RETRAIN_HOME)/mlflow/mlflow.db --port $(MLFLOW_PORT)

clean:  ## remove all local state (.retrain/) but keep .venv
	rm -rf $(RETRAIN_HOME)
