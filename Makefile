# Marrowscope developer entry points. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard protos/marrowscope/v1/*.proto)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned dependencies

demo: setup ## start the local stack, run a short demo campaign on generated data, stop
	$(BIN)/marrowscope demo

up: setup ## start the local stack in the background (stop with `make down`)
	$(BIN)/marrowscope up --detach

down: setup ## stop the local stack
	$(BIN)/marrowscope down

chromium: ## Debian's Chromium for the browser tests (apt-get; root or sudo), if missing
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian's chromium for the browser tests..."; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup chromium ## unit, integration, e2e and browser tests (real PostgreSQL, S3, gRPC, Chromium)
	$(BIN)/python -m pytest -q -ra

test-fast: setup ## the inner loop: unit and integration tests, no whole stack, browser or slow training
	$(BIN)/python -m pytest -q -ra -m "(unit or integration) and not slow"

bench: setup ## benchmarks that print figures (results under bench/results/)
	$(BIN)/python bench/run_all.py

gpu-check: setup ## on a GPU node: is the classifier served on CUDA? parity, images/s
	$(BIN)/marrowscope gpu-check --json bench/results/gpu_check.json

protos: setup ## regenerate the gRPC code from protos/
	$(BIN)/python -m marrowscope.core.protogen

lint: setup ## ruff check, ruff format --check, mypy (what CI and pre-commit run)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy services

helm-lint: setup ## render, lint --strict and schema-check the Helm chart (no cluster needed)
	$(BIN)/python -m pytest -q tests/deploy

format: setup ## ruff format + autofix
	$(BIN)/ruff format services tests bench
	$(BIN)/ruff check --fix services tests bench

clean: ## remove the local stack's state (.marrowscope/) and caches
	rm -rf .marrowscope .pytest_cache .mypy_cache .ruff_cache test-artifacts

# `make lint` then `make test`: exactly what CI runs (.ci/run).
ci: lint test ## what CI runs: the linters, then the whole test suite

.PHONY: help setup chromium demo up down test test-fast ci bench protos lint helm-lint format clean
