# Developer commands. Each target is a thin call; the logic lives in scripts/ and the Python package.
# Virtualenv and built binaries are cached outside the checkout (~/.cache/multinic).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV_BIN := $(shell MULTINIC_VENV=$${MULTINIC_VENV:-$$HOME/.cache/multinic/venv}; echo $$MULTINIC_VENV/bin)
PY := $(VENV_BIN)/python
IMAGE ?= multinic:v1alpha1
PLATFORMS ?= linux/amd64,linux/arm64
# podman, buildah or docker, whichever exists (a docker client without a reachable daemon does not count).
CONTAINER_TOOL ?= $(shell for t in podman buildah; do command -v $$t >/dev/null 2>&1 && { echo $$t; exit; }; done; \
  docker info >/dev/null 2>&1 && echo docker || echo podman)
# Empty: the Containerfile's default (python:3.11-slim). Without a registry: localhost/multinic-base:bookworm
# (scripts/test-images makes it with mmdebstrap).
BASE_IMAGE ?=
# What podman/buildah need on cgroup-v1-hybrid hosts with a restrictive sandbox (crun cannot, default rlimits
# are refused); harmless elsewhere. A CA bundle in $$PIP_CERT (TLS-intercepting proxy) goes in as a build secret.
PODMAN_FLAGS ?= $(if $(shell command -v runc 2>/dev/null),--runtime runc) --cgroup-manager cgroupfs
IMAGE_BUILD_FLAGS ?= --network host --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
  $(if $(PIP_CERT),--secret id=pip-ca$(comma)src=$(PIP_CERT)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))
comma := ,
# Test services: a private MariaDB and etcd + kube-apiserver, both started or built on demand.
TEST_ENV = eval "$$(scripts/local-mariadb env)" && export KUBEBUILDER_ASSETS="$$(scripts/control-plane-assets)"

.PHONY: help venv build test test-db test-integration test-openstack test-cluster test-all test-coverage lint fmt vet \
        run migrate demo install uninstall deploy undeploy docker-build docker-buildx services images node-assets

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

images: ## build (or reuse) the cluster tier's images: controller, test MariaDB, pause (~/.cache/multinic/images)
	scripts/test-images >/dev/null

node-assets: ## build (or reuse) kubelet, kube-proxy and CoreDNS for the cluster tier's node (cached)
	scripts/control-plane-assets --node >/dev/null

test-cluster: venv services node-assets images ## the cluster tier: a real containerd + kubelet node running the controller image (root)
	$(TEST_ENV) && $(PY) -m pytest tests/cluster

test-openstack: venv services ## contract tests + controller e2e against real OpenStack and the simulator (bed left up)
	scripts/openstack-testbed up && scripts/openstack-testbed seed
	$(TEST_ENV) && $(PY) -m pytest tests/openstack_real

# Runs pytest with the real OpenStack testbed up for the openstack_real tier, and takes the bed down after.
# Two pytest-xdist workers (the machine's cores); each test module stays on one worker, and so do the cluster
# and openstack_real tiers (tests/conftest.py). `make test-all PYTEST_WORKERS=` runs everything in one process.
PYTEST_WORKERS ?= -n 2 --dist loadgroup
WITH_TESTBED = scripts/openstack-testbed up && scripts/openstack-testbed seed && $(TEST_ENV) && $(PY) -m pytest $(PYTEST_WORKERS)

test-all: venv services node-assets images ## every test tier, the real OpenStack testbed included (brought up, then down): what CI runs
	$(WITH_TESTBED); status=$$?; scripts/openstack-testbed down; exit $$status

test-coverage: venv services node-assets images ## every tier with a coverage report (htmlcov/)
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

deploy: ## install the operator into multinic-system and wait until it is available (DEPLOY_FLAGS="--namespace NS --dry-run ...")
	scripts/deploy-operator.sh --image $(IMAGE) $(DEPLOY_FLAGS)

undeploy: ## remove every MultiNicOperator, the operator and the CRDs; data kept (UNDEPLOY_FLAGS=--delete-data removes it)
	scripts/cleanup-operator.sh $(UNDEPLOY_FLAGS)

docker-build: ## build the container image $(IMAGE) with podman, buildah or docker (BASE_IMAGE=... without a registry)
	@case "$(notdir $(CONTAINER_TOOL))" in \
	  podman) set -x; podman $(PODMAN_FLAGS) build $(IMAGE_BUILD_FLAGS) -f Containerfile -t $(IMAGE) . ;; \
	  buildah) set -x; buildah build $(IMAGE_BUILD_FLAGS) $(if $(shell command -v runc 2>/dev/null),--runtime runc) \
	    -f Containerfile -t $(IMAGE) . ;; \
	  *) set -x; DOCKER_BUILDKIT=1 $(CONTAINER_TOOL) build $(IMAGE_BUILD_FLAGS) -f Containerfile -t $(IMAGE) . ;; \
	esac || { echo "docker-build failed; no registry reachable? build on a local Debian base:" \
	  "scripts/test-images controller, then make docker-build BASE_IMAGE=localhost/multinic-base:bookworm" >&2; exit 1; }

docker-buildx: ## build a multi-arch image ($(PLATFORMS)) with docker buildx
	docker buildx build -f Containerfile --platform $(PLATFORMS) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  $(if $(PIP_CERT),--secret id=pip-ca$(comma)src=$(PIP_CERT)) -t $(IMAGE) .
