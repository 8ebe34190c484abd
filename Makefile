# Developer commands. Each target is a thin call; the logic lives in scripts/ and the Python package.
# Virtualenv and built binaries are cached outside the checkout (~/.cache/multinic).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV_BIN := $(shell MULTINIC_VENV=$${MULTINIC_VENV:-$$HOME/.cache/multinic/venv}; echo $$MULTINIC_VENV/bin)
PY := $(VENV_BIN)/python
IMAGE ?= multinic:v1alpha1
PLATFORMS ?= linux/amd64,linux/arm64
CONTAINER_TOOL ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null || echo docker)
# Test services: a private MariaDB and etcd + kube-apiserver, both started or built on demand.
TEST_ENV = eval "$$(scripts/local-mariadb env)" && export KUBEBUILDER_ASSETS="$$(scripts/control-plane-assets)"

.PHONY: help venv build test test-db test-integration test-openstack test-all test-coverage lint fmt vet run migrate \
        demo install uninstall deploy undeploy docker-build docker-buildx services

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: ## create/refresh the cached virtualenv with the project and its test/dev tools
	@scripts/bootstrap-venv >/dev/null

build: venv ## build a wheel and sdist into dist/
	$(PY) -m pip wheel --no-deps -q -w dist .

services: ## start the local MariaDB and provision the control-plane binaries (cached)
	scripts/local-mariadb up
	scripts/control-plane-assets >/dev/null

test: venv ## unit tests (no services needed)
	$(PY) -m pytest tests/unit

test-db: venv ## database tests against a real MariaDB (started if needed)
	scripts/local-mariadb up
	eval "$$(scripts/local-mariadb env)" && $(PY) -m pytest tests/db

test-integration: venv services ## integration + end-to-end tests on a real kube-apiserver, MariaDB and the OpenStack simulator
	$(TEST_ENV) && $(PY) -m pytest tests/db tests/integration tests/e2e

test-openstack: venv services ## contract tests + controller e2e against real OpenStack and the simulator (bed left up)
	scripts/openstack-testbed up && scripts/openstack-testbed seed
	$(TEST_ENV) && $(PY) -m pytest tests/openstack_real

# Runs pytest with the real OpenStack testbed up for the openstack_real tier, and takes the bed down after.
WITH_TESTBED = scripts/openstack-testbed up && scripts/openstack-testbed seed && $(TEST_ENV) && $(PY) -m pytest

test-all: venv services ## every test tier, the real OpenStack testbed included (brought up, then down): what CI runs
	$(WITH_TESTBED); status=$$?; scripts/openstack-testbed down; exit $$status

test-coverage: venv services ## every tier with a coverage report (htmlcov/)
	$(WITH_TESTBED) --cov=multinic_ctrl --cov-report=term-missing:skip-covered --cov-report=html; \
	  status=$$?; scripts/openstack-testbed down; exit $$status

PY_SCRIPTS = $(shell grep -l '^\#!/usr/bin/env python' scripts/* 2>/dev/null)

lint: venv ## ruff (lint + format check, extension-less scripts included) and the layer contracts
	$(VENV_BIN)/ruff check src tests scripts $(PY_SCRIPTS)
	$(VENV_BIN)/ruff format --check src tests $(PY_SCRIPTS)
	$(VENV_BIN)/lint-imports

fmt: venv ## format and auto-fix
	$(VENV_BIN)/ruff format src tests $(PY_SCRIPTS)
	$(VENV_BIN)/ruff check --fix src tests $(PY_SCRIPTS)

vet: venv ## static type check (mypy --strict)
	$(VENV_BIN)/mypy --strict src/multinic_ctrl

run: venv ## run the controller locally against $$KUBECONFIG (DB_* from the environment)
	$(PY) -m multinic_ctrl run

migrate: venv ## create/upgrade the schema in DB_NAME on DB_HOST
	$(PY) -m multinic_ctrl migrate

demo: venv ## bring up MariaDB, a control plane and the OpenStack simulator; reconcile the sample; show the rows
	$(PY) scripts/demo

install: ## install the CRDs into the cluster of the current kubeconfig
	kubectl apply -f manifests/crds/

uninstall: ## remove the CRDs (and with them every OpenstackConfig/MultiNicOperator)
	kubectl delete --ignore-not-found -f manifests/crds/

deploy: ## deploy CRDs, RBAC and the controller into multinic-system
	@test -d manifests/controller || { echo "deploy: manifests/controller is not written yet (operator/deployment issue)"; exit 1; }
	kubectl apply -f manifests/crds/ -f manifests/rbac/ -f manifests/controller/

undeploy: ## remove what deploy created
	kubectl delete --ignore-not-found -f manifests/controller/ -f manifests/rbac/

docker-build: ## build the container image $(IMAGE) with podman or docker
	$(CONTAINER_TOOL) build -f Containerfile -t $(IMAGE) .

docker-buildx: ## build a multi-arch image ($(PLATFORMS)) with docker buildx
	docker buildx build -f Containerfile --platform $(PLATFORMS) -t $(IMAGE) .
