# Set-up and test entry points. `make test` installs whatever is missing, then runs the whole test suite.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test quickstart bench lint

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0"   # CPU build; GPU users install their own
	$(PIP) install -q -e ".[dev,study,distributed]"

test: install
	$(PYTHON) -m pytest -q
	$(PYTHON) -m pytest -q --nbmake notebooks

quickstart: install
	azc quickstart

bench: install
	azc bench --quick --json bench.json

lint:
	ruff check alphazero_concepts tests
