# osflow's task runner: `make help` lists the targets.  Each target that needs Python sets up
# .venv first (scripts/setup.sh: tshark, osflow editable with its test and dev extras; it
# installs only what is missing), then runs the pinned tools from there.  CONTRIBUTING.md says more.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(if $(OSFLOW_VENV),$(OSFLOW_VENV),$(CURDIR)/.venv)
BIN := $(VENV)/bin
# what ruff checks (mypy's files are in pyproject.toml)
PY_PATHS := postproc tests benchmarks
# extra arguments for pytest: make test ARGS='tests/test_post.py -k cold'
ARGS ?=
# the lab needs root
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup test lint ruff types luacheck fmt golden bench bench-quick lab

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

setup:  ## tshark, and .venv with osflow and its test and dev extras (only what is missing)
	@bash -c 'source scripts/setup.sh'

test:  ## the whole test suite, as README says (ARGS='tests/test_x.py -k y' for part of it)
	./scripts/test.sh $(ARGS)

lint: setup  ## ruff, mypy and luacheck; all three run, the target fails if any of them does
	@status=0; \
	echo "ruff check $(PY_PATHS)"; $(BIN)/ruff check $(PY_PATHS) || status=1; \
	echo "mypy"; $(BIN)/mypy || status=1; \
	$(MAKE) --no-print-directory luacheck || status=1; \
	exit $$status

ruff: setup  ## ruff alone
	$(BIN)/ruff check $(PY_PATHS)

types: setup  ## mypy alone (its files and options: pyproject.toml)
	$(BIN)/mypy

luacheck:  ## luacheck on the Wireshark plugin (Debian/Ubuntu: apt-get install lua-check)
	@command -v luacheck >/dev/null \
	  || { echo "luacheck not found: install it (Debian/Ubuntu: sudo apt-get install lua-check)" >&2; exit 1; }
	luacheck dissectors

fmt: setup  ## apply ruff's safe fixes (import order, pyupgrade, ...); review `git diff` after
	$(BIN)/ruff check --fix $(PY_PATHS)

golden: setup  ## rewrite the golden files from the current code (OSFLOW_UPDATE_GOLDEN=1), then list what changed
	OSFLOW_UPDATE_GOLDEN=1 ./scripts/test.sh $(ARGS)
	@echo "golden files changed (review every line with git diff before committing):"
	@git status --short -- tests/golden

bench: setup  ## every benchmark, one after the other (an hour or more; run it on an idle machine)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b"; done

bench-quick: setup  ## bench_post.py --quick: the benchmark without the 1.6 GB PDML and pyshark
	$(BIN)/python benchmarks/bench_post.py --quick

lab:  ## the end-to-end tests on the real OpenStack lab (root: installs packages, changes the system)
	$(SUDO) bash tests/lab/run-e2e.sh $(ARGS)
