# hone: set-up and entry points. Every target is idempotent: a second run skips what is done.
#   make flow   set up, then run the main job (train + sharpen the default network, export it, check its
#               RTL in simulation, write a report)
#   make test   set up, then run the test suite
#   make docs   build the documentation into site/ (strict: a warning fails it; nothing is fetched)
#   make results  remake the results pages and README's headline table from the benches' stamped JSON

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
APT_PACKAGES := dataset-fashion-mnist iverilog g++ perl make libusb-1.0-0 libftdi1-2
STAMP := $(VENV)/.hone-installed
FLOW_OUT ?= runs/flow
PYTEST_ARGS ?=

.PHONY: setup apt venv flow test test-quick docs results clean

setup: apt venv

# Debian packages: install only the missing ones (apt-get update only when something is missing).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[test,jax,docs]"
	@touch $(STAMP)

flow: setup
	$(VENV)/bin/hone flow --out $(FLOW_OUT)

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mkdocs build --strict --quiet
	$(VENV)/bin/python -m pytest -n 2 $(PYTEST_ARGS)

test-quick: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

docs: venv
	$(VENV)/bin/mkdocs build --strict

results: venv
	$(VENV)/bin/python bench/results.py

clean:
	rm -rf $(VENV) runs site build/api .pytest_cache .hypothesis *.egg-info
