# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
STACK  := $(PY) -m stack
export TF_CLI_CONFIG_FILE := $(CURDIR)/infra/terraform.rc

.PHONY: venv test unit integration e2e demo up down status stop start infra-validate schemas clean bench chaos

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: venv            ## the whole suite: unit, integration, end to end
	$(PYTEST) -q

unit: venv            ## pure logic, no I/O, seconds
	$(PYTEST) -q tests/unit

integration: venv     ## real PostgreSQL and the AWS emulator
	$(PYTEST) -q tests/integration

e2e: venv             ## the whole system over HTTP
	$(PYTEST) -q tests/e2e

demo: venv            ## start everything, place one order per outcome, print the table, stop
	$(STACK) demo

up: venv              ## start everything in the background (supervisord)
	$(STACK) up

down: venv
	$(STACK) down

status: venv
	$(STACK) status

stop: venv            ## make stop SVC=fulfillment_svc
	$(STACK) stop $(SVC)

start: venv           ## make start SVC=fulfillment_svc
	$(STACK) start $(SVC)

infra-validate:
	terraform -chdir=infra init -backend=false -input=false >/dev/null
	terraform -chdir=infra validate
	terraform fmt -check -recursive infra

schemas: venv         ## regenerate the JSON Schemas of every message
	$(PY) -m messaging.schemas

clean:
	rm -rf $(VENV) .run

bench: venv           ## whole-saga throughput and latency on this machine (not part of the tests)
	$(PY) -m stack.bench --orders 200 --concurrency 16

chaos: venv           ## make chaos SEED=7 ORDERS=300 RATE=5: orders under faults, then every invariant checked
	$(PY) -m stack.chaos $(if $(SEED),--seed $(SEED)) --orders $(or $(ORDERS),300) --rate $(or $(RATE),5) $(CHAOS_ARGS)
