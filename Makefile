# Developer entry points. `make demo` and `make test` work on a fresh machine: they install
# what is missing (system packages, a virtualenv with the tools), build, then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export PYO3_PYTHON := $(abspath $(BIN)/python)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: setup build demo test test-rust test-python matrix lint clean

$(BIN)/python:
	tools/bootstrap.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt

setup: $(BIN)/python build

## Build the extension into the virtualenv (editable install of the package).
build: $(BIN)/python
	$(BIN)/maturin develop --release -q

## The main job: the self-test, then a program patched while an editor saves its source.
demo: setup
	$(BIN)/python -m mighty_patcher --selftest
	$(BIN)/python demo/live_demo.py

## The whole test suite: Rust tests, then the Python tests against the built extension.
test: setup test-rust test-python

test-rust: $(BIN)/python
	cargo test --quiet

test-python: build
	$(BIN)/python -m pytest

## Build, layout-check and test on every supported CPython (3.10-3.15), and print a table;
## FREE_THREADED=1 adds the free-threaded 3.14t build.
matrix: $(BIN)/python
	$(BIN)/python tools/matrix.py $(if $(FREE_THREADED),--free-threaded)

lint: $(BIN)/python
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests src/selftest.py demo bench tools
	$(BIN)/ruff format --check python tests src/selftest.py demo bench tools
	$(BIN)/mypy

clean:
	rm -rf target $(VENV) python/mighty_patcher/*.so
