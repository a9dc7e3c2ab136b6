# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Small vectorized steps run fastest on one thread per process (two fight on 2 cores).
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test lint format bench

# Debian packages (apt-get needs root, as on CI; skipped when present): Fashion-MNIST's idx
# files, Chromium for the headless browser test of the HTML report, and a PostgreSQL server
# for the tests of Optuna studies on PostgreSQL.
SYSTEM_PACKAGES := dataset-fashion-mnist chromium postgresql
SYSTEM_CHECK := test -d /usr/share/datasets/fashion-mnist && command -v chromium >/dev/null \
	&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1

$(STAMP): pyproject.toml Makefile
	$(SYSTEM_CHECK) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,rdata,apps,ray,bench]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: an optimizer tournament on digits (7 optimizers, same budget, 5 seeds each).
demo: setup
	rm -rf runs/demo
	$(VENV)/bin/optimkit compare --data digits --model mlp --out runs/demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: setup
	$(PY) -m benchmarks
