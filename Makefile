# Developer entry points. `make demo` and `make test` work on a fresh machine: they install
# what is missing (system packages, a virtualenv with the tools), build, then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export PYO3_PYTHON := $(abspath $(BIN)/python)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: setup build demo test test-rust test-python matrix wheels bench bench-smoke fuzz stress leaks lint clean

$(BIN)/python:
	tools/bootstrap.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt

## The tools again whenever requirements-dev.txt changed (a virtualenv made before the change
## would lack what was added).
$(VENV)/.requirements: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/python $(VENV)/.requirements build

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
	$(BIN)/python -m pytest -n 2

## Build, layout-check and test on every supported CPython (3.10-3.15), and print a table;
## FREE_THREADED=1 adds the free-threaded 3.14t build; VERSIONS="3.12 3.13" chooses.
matrix: $(BIN)/python
	$(BIN)/python tools/matrix.py $(VERSIONS) $(if $(FREE_THREADED),--free-threaded)

## Release artefacts in dist/: one binary wheel per supported CPython (3.10-3.15; VERSIONS=3.11
## for one), linked with zig for glibc 2.17 so that the manylinux2014 tag auditwheel checks
## holds, and the sdist. Installs what it needs (libclang, ziglang and auditwheel into .venv).
VERSIONS ?=
wheels: $(BIN)/python
	tools/bootstrap.sh
	$(BIN)/python tools/wheels.py $(VERSIONS)

## Benchmarks against the peers (jurigged, IPython autoreload), all in one run: prints one table
## and writes it, the raw figures and a chart to bench/out/. Makes and updates its own
## virtualenvs (bench/.venvs: a release build per CPython version, the peers from PyPI).
bench:
	tools/bootstrap.sh
	$(PYTHON) bench/run.py

## One small case of each benchmark, no thresholds: checks that they still run (CI runs it).
bench-smoke:
	tools/bootstrap.sh
	$(PYTHON) bench/run.py --smoke

## Differential fuzzing against a restart: N random edits (default 10000) of a generated
## package, each saved under the real watcher into a running program and compared with a fresh
## interpreter; prints edits, mismatches (seeds, minimal failing edit) and crashes. SEED=17 runs
## one seed again. The test suite runs a short pass (tests/test_fuzz.py).
N ?= 10000
fuzz: build
	cd tests && $(abspath $(BIN))/python -m fuzz --edits $(N) $(if $(SEED),--seed $(SEED))

## Eight threads calling patched code through 1,000 reloads (the test suite runs 200).
stress: build
	MIGHTY_PATCHER_STRESS_RELOADS=1000 $(BIN)/python -m pytest -q -s tests/test_threads.py

## Reference leaks on a debug build of CPython 3.13 (built once by tools/cpython.sh into
## ~/.cache/mighty-patcher/cpython-debug, a few minutes): 1,000 reloads must leave sys.gettotalrefcount() and the live objects flat.
LEAKS_VENV := .venv-leaks
leaks:
	tools/bootstrap.sh
	CPYTHON_CACHE=$$HOME/.cache/mighty-patcher/cpython-debug CONFIGURE_EXTRA=--with-pydebug \
		tools/cpython.sh 3.13 >/dev/null
	test -x $(LEAKS_VENV)/bin/python || \
		$$HOME/.cache/mighty-patcher/cpython-debug/3.13/bin/python3.13 -m venv $(LEAKS_VENV)
	$(LEAKS_VENV)/bin/pip install -q "maturin>=1.9,<2"
	VIRTUAL_ENV=$(abspath $(LEAKS_VENV)) PYO3_PYTHON=$(abspath $(LEAKS_VENV))/bin/python \
		CARGO_TARGET_DIR=target/leaks $(LEAKS_VENV)/bin/maturin develop --release -q
	$(LEAKS_VENV)/bin/python tests/leak_check.py --reloads 1000

## Clippy runs twice: against the main interpreter, and against a 3.12+ one where there is one
## (code such as the function index, src/heap/index.rs, is compiled for 3.12+ only).
NEW_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
	$(shell command -v python3.13 || command -v python3.12))
lint: $(BIN)/python
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(if $(NEW_PYTHON),PYO3_PYTHON=$(NEW_PYTHON) CARGO_TARGET_DIR=target/lint-new \
		cargo clippy --all-targets -- -D warnings)
	$(BIN)/ruff check python tests src/selftest.py demo bench tools
	$(BIN)/ruff format --check python tests src/selftest.py demo bench tools
	$(BIN)/mypy

clean:
	rm -rf target $(VENV) python/mighty_patcher/*.so bench/.venvs bench/out $(LEAKS_VENV)
