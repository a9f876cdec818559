# Every target bootstraps .venv on first use; re-run after pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit envtest azure-tools contract crds bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

## demo: run the example platform on the embedded local backend (no Azure, no cluster)
demo: $(STAMP)
	$(BIN)/amlops up manifests/ --once --smoke

## test: lint, type-check, then every test tier (unit, infra, local, operator on a real apiserver)
test: $(STAMP) lint typecheck envtest azure-tools
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(wildcard operator/amlops infra tests bench)

## envtest: build kube-apiserver + etcd from the Go module proxy into a cache outside the repo
envtest:
	bash tests/envtest/build.sh

## azure-tools: npm-install Azurite 3.35.0 and oav 4.0.3 into a cache outside the repo
azure-tools:
	bash tests/azure/tools.sh

## contract: drive azure-ai-ml against the fake ARM API, record the traffic, validate it with oav
CONTRACT_DIR := .amlops/contract
contract: $(STAMP) azure-tools
	rm -rf $(CONTRACT_DIR) && mkdir -p $(CONTRACT_DIR)/traffic
	AMLOPS_AZURE_TRAFFIC_DIR=$(CURDIR)/$(CONTRACT_DIR)/traffic $(BIN)/python -m pytest tests/azure \
		-q -p no:randomly --ignore=tests/azure/test_contract.py
	$(BIN)/python -m tests.azure.oav $(CONTRACT_DIR)/traffic --out $(CONTRACT_DIR)

## crds: regenerate operator/deploy/crds/ (CRDs, the operator's ClusterRole, kustomization) from the kinds
crds: $(STAMP)
	$(BIN)/python -m amlops.crds operator/deploy/crds

bench: $(STAMP)
	$(BIN)/python -m bench.validate
	$(BIN)/python -m bench.infra
	$(BIN)/python -m bench.local
	$(BIN)/python -m bench.operator
	$(BIN)/python -m bench.gitsource
	$(BIN)/python -m bench.azureml

clean:
	rm -rf $(VENV) .amlops .mypy_cache .ruff_cache
