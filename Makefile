# EXAI — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
TOOLS := deploy/local-stack/build-tools.sh

.PHONY: help install tools run test test-unit test-integration test-e2e test-compose compose-images fuzz lint typecheck bench bench-peers bench-chain dashboards clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "[install] creating $(VENV) and installing exai + dev dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(VENV)/bin/pip install -q uv==0.13.9
	@$(UV) pip install --python $(PY) -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the services and dev tools

tools: ## build otelcol, Prometheus, Alertmanager, Jaeger, docker compose plugin from Go modules (cached in ~/.cache/exai/tools; progress + ETA; EXAI_TOOLS_JOBS=1 builds one at a time)
	@bash $(TOOLS) build

run: install tools ## run the whole system locally (no Docker): services + collector + Prometheus + Alertmanager + Jaeger
	@$(PY) deploy/local-stack/stack.py run

.PHONY: deps
deps: ## check for Redis, Postgres and Go (the test targets run this first); installs Redis/Postgres with apt-get when root or passwordless sudo, else names the command
	@bash deploy/local-stack/ensure-deps.sh $(DEPS_NEEDED)

test: DEPS_NEEDED := redis postgres go docker
test: deps install tools lint typecheck ## lint + mypy --strict, then every test: unit, integration (real Redis/Postgres), e2e (real stack)
	@$(PY) -m pytest -q

test-unit: install ## unit tests only
	@$(PY) -m pytest -q tests/unit

test-integration: DEPS_NEEDED := redis postgres
test-integration: deps install ## integration tests (real Redis and Postgres on loopback)
	@$(PY) -m pytest -q tests/integration

test-e2e: deps install tools ## end-to-end tests against the running no-Docker stack
	@$(PY) -m pytest -q tests/e2e

compose-images: tools ## build every compose image here, no registry needed (Debian base from debootstrap, the Go-built tools); starts a Docker engine if none answers
	@bash deploy/docker/engine.sh start >/dev/null
	@bash deploy/docker/images.sh build

test-compose: DEPS_NEEDED := go docker
test-compose: deps install tools ## docker compose up for real (engine, images, --wait), the end-to-end checks against it, restarts, then down -v
	@$(PY) -m pytest -q tests/compose

fuzz: install ## nightly-size fuzzing: 100,000 generated frames per WebSocket protocol, 20,000 requests per HTTP API (make test runs a tenth)
	@EXAI_FUZZ_FRAMES=$${EXAI_FUZZ_FRAMES:-100000} $(PY) -m pytest -q tests/integration/fuzz

lint: install ## ruff format check + ruff check
	@$(VENV)/bin/ruff format --check services tests grafana deploy
	@$(VENV)/bin/ruff check services tests grafana deploy

typecheck: install ## mypy --strict on the services
	@$(VENV)/bin/mypy services

bench: install ## benchmarks (figures printed and recorded in docs/benchmarks.md)
	@$(PY) -m pytest -q -m bench tests/bench -p no:cacheprovider -s

bench-peers: install ## provider-proxy vs the LiteLLM proxy, one core each, hey on the other (installs litellm 1.100.0, hey and py-spy into ~/.cache/exai; ARGS="--profile exai_on")
	@$(PY) -m tests.bench.peers $(ARGS)

bench-chain: install ## whole gateway chain as real processes: telemetry on/off and 2,000 WebSocket connections (Redis + Postgres; py-spy when below goal; ARGS="--profile")
	@$(PY) -m tests.bench.chain $(ARGS)

dashboards: install ## regenerate grafana/dashboards/*.json from grafana/generate_dashboards.py
	@$(PY) grafana/generate_dashboards.py

clean: ## remove local state (var/), keeps .venv and the tool cache
	rm -rf var
