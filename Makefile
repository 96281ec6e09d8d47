# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
JOBS   ?= 3
STACK  := $(PY) -m stack
# Name prefix of the queues and topics (SAGA_RESOURCE_PREFIX of the services, Terraform's name_prefix).
PREFIX ?= saga
MOTO_PORT ?= 5000
# The hashicorp/aws provider from the filesystem mirror where this machine has one, else the registry.
ifneq ($(wildcard /opt/tf-plugins/registry.terraform.io),)
export TF_CLI_CONFIG_FILE := $(CURDIR)/infra/terraform.rc
endif
# The provider comes from the filesystem mirror where there is one, else from the registry.
TERRAFORM := $(if $(wildcard /opt/tf-plugins),TF_CLI_CONFIG_FILE=$(CURDIR)/infra/terraform.rc terraform,env -u TF_CLI_CONFIG_FILE terraform)
# checkov pins boto3 below what the services need, so it lives in a venv of its own.
CHECKOV_VERSION := 3.3.30
CHECKOV := .tools/checkov/bin/checkov

.PHONY: venv test test-all unit integration e2e e2e-localstack browser screenshots demo up down status stop start smoke \
        lint typecheck infra-validate infra-test infra-lint audit lock lock-check schemas clean bench bench-peer bench-table chaos \
        localstack localstack-stop moto moto-stop deploy-local destroy-local

venv: $(VENV)/.installed $(CHECKOV)
# The services' dependencies exactly as the image has them (requirements.lock, hashes checked),
# then the project and its development tools on top, which leave those pins as they are.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --dry-run --no-deps --require-hashes -r requirements.lock --report - | $(PY) -c \
	  'import json, sys; wrong = [i["metadata"]["name"] for i in json.load(sys.stdin)["install"]]; sys.exit(f"not the locked versions: {wrong}" if wrong else 0)'
	touch $@

test: venv            ## what a developer runs between changes: everything but the slowest families, in JOBS=3 processes
	$(PYTEST) -q -m "not slow" $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist loadfile)

test-all: venv        ## the whole suite, what CI runs: also Terraform, checkov, the browser, fuzzing, the bench smoke run
	$(PYTEST) -q

lint: venv            ## ruff: lint rules and formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv       ## mypy: strict on libs/ and the saga engine, normal elsewhere (pyproject.toml)
	$(VENV)/bin/mypy

unit: venv            ## pure logic, no I/O, seconds
	$(PYTEST) -q tests/unit

integration: venv     ## real PostgreSQL and the AWS emulator
	$(PYTEST) -q tests/integration

e2e: venv             ## the whole system over HTTP
	$(PYTEST) -q tests/e2e

browser: venv         ## the console in headless Chromium (Debian's chromium and chromium-driver)
	$(PYTEST) -q tests/browser

screenshots: venv     ## the README's pictures of the console, taken by the browser tests' code
	$(PY) -m tests.browser.screenshots docs/screenshots

demo: venv            ## start everything, place one order per outcome, print the table, stop
	$(STACK) demo

e2e-localstack: venv localstack  ## the end-to-end tests on LocalStack (Terraform applies each test stack's topology)
	AWS_ENDPOINT_URL=http://127.0.0.1:4566 $(PYTEST) -q tests/e2e

up: venv              ## start everything in the background (supervisord), wait until healthy; REPLICAS=2 or REPLICAS=2,orchestrator=3; TRACING=1
	$(STACK) up --prefix $(PREFIX) $(if $(REPLICAS),--replicas '$(REPLICAS)') $(if $(filter 1 yes true,$(TRACING)),--tracing)

smoke: venv           ## one order per outcome on the stack `make up` started; fails if an outcome is wrong
	$(STACK) smoke

localstack:           ## LocalStack on 127.0.0.1:4566 (docker if an engine answers, else installed on the host)
	$(PYTHON) -m stack.localstack start

localstack-stop:
	$(PYTHON) -m stack.localstack stop

moto: venv            ## a moto server on 127.0.0.1:$(MOTO_PORT) in the background, in place of LocalStack
	@mkdir -p .run
	nohup $(PY) -m stack.emulator -H 127.0.0.1 -p $(MOTO_PORT) >.run/moto.log 2>&1 & echo $$! >.run/moto.pid
	@$(PY) -c 'from stack.infra import wait_for_port; wait_for_port($(MOTO_PORT))'
	@echo "moto server on http://127.0.0.1:$(MOTO_PORT)  (export AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT))"

moto-stop:
	@if [ -f .run/moto.pid ]; then kill $$(cat .run/moto.pid) && rm .run/moto.pid && echo "moto server stopped"; fi

deploy-local: venv    ## terraform init + apply of infra/ on AWS_ENDPOINT_URL, prefix $(PREFIX); state in .deploy/
	$(STACK) deploy-local --prefix $(PREFIX)

destroy-local: venv   ## terraform destroy of what deploy-local created
	$(STACK) destroy-local --prefix $(PREFIX)

down: venv
	$(STACK) down

status: venv
	$(STACK) status

stop: venv            ## make stop SVC=fulfillment_svc (every replica) or SVC=fulfillment_svc-1 (one)
	$(STACK) stop $(SVC)

start: venv           ## make start SVC=fulfillment_svc, waits until healthy
	$(STACK) start $(SVC)

# --- infra/ ---------------------------------------------------------------------------------

$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'

infra-validate:       ## terraform init (no backend), validate, fmt -check
	$(TERRAFORM) -chdir=infra init -backend=false -input=false >/dev/null
	$(TERRAFORM) -chdir=infra validate
	terraform fmt -check -recursive infra

infra-test: infra-validate  ## plan the local and the AWS configuration against a mocked provider (infra/tests)
	$(TERRAFORM) -chdir=infra test

infra-lint: venv      ## checkov over infra/, hadolint over the Dockerfile
	$(CHECKOV) --quiet --compact --skip-download --framework terraform -d infra
	$(VENV)/bin/hadolint Dockerfile

audit: venv           ## known vulnerabilities in requirements.lock (pip-audit; skipped, saying so, where its database is unreachable)
	$(PYTEST) -q -rs tests/infra/test_audit.py

lock: venv            ## pin the image's Python dependencies (requirements.lock) from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml -o requirements.lock --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet

lock-check: venv      ## fail when requirements.lock is not what `make lock` would write now (needs PyPI)
	$(VENV)/bin/uv pip compile pyproject.toml -o /tmp/requirements.lock.$$$$ --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet --no-header \
	  && grep -v '^#' requirements.lock | diff -u - /tmp/requirements.lock.$$$$ ; status=$$?; rm -f /tmp/requirements.lock.$$$$; exit $$status

schemas: venv         ## regenerate the JSON Schemas of every message
	$(PY) -m contracts.schemas

clean:
	rm -rf $(VENV) .run .tools

bench: venv           ## make bench RATE=300 DURATION=60 WARMUP=10 MIX=success=70,... REPLICAS=2 PROFILE=1 POOLS=deployed (RAMP=1: the knee; RECOVERY=500: kill the orchestrator)
	$(PY) -m stack.bench $(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION)) $(if $(WARMUP),--warmup $(WARMUP)) \
	  $(if $(MIX),--mix $(MIX)) $(if $(filter 1 yes true,$(RAMP)),--ramp) $(if $(RATES),--rates $(RATES)) $(if $(BENCH_PREFIX),--prefix $(BENCH_PREFIX)) \
	  $(if $(IDLE),--idle $(IDLE)) $(if $(RECOVERY),--recovery $(RECOVERY)) $(if $(REPLICAS),--replicas $(REPLICAS)) \
	  $(if $(filter 1 yes true,$(PROFILE)),--profile) $(if $(EMULATOR),--emulator $(EMULATOR)) $(if $(POOLS),--pools $(POOLS)) $(BENCH_ARGS)

bench-peer: venv      ## make bench-peer DURATION=60: the same saga on DBOS Transact, beside make bench (peer.json)
	$(PY) -m stack.bench.peer $(if $(DURATION),--duration $(DURATION)) $(if $(WARMUP),--warmup $(WARMUP)) $(if $(THREADS),--threads $(THREADS))

bench-table: venv     ## make bench-table RESULTS="bench-results/*/result.json ...": the README's performance table from those runs
	$(PY) -m stack.bench.targets $(RESULTS)

chaos: venv           ## make chaos SEED=7 ORDERS=300 RATE=5 REPLICAS=2 POOLS=deployed: orders under faults, then every invariant checked
	$(PY) -m stack.chaos $(if $(SEED),--seed $(SEED)) --orders $(or $(ORDERS),300) --rate $(or $(RATE),5) \
	  $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(POOLS),--pools $(POOLS)) $(CHAOS_ARGS)
