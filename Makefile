# Quick start: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test demo lint format bench clean compose-test lock

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python benchmarks/run_all.py

# the compose fleet built and run with Podman, a worker killed mid-run (tests/compose/run.sh; needs root)
compose-test:
	bash tests/compose/run.sh

# constraints.txt: exact versions of every dependency for the image, re-resolved from pyproject.toml
lock: venv
	$(BIN)/python -m pip install -q --dry-run --ignore-installed --report $(VENV)/lock.json ".[s3]" setuptools pip
	$(BIN)/python tests/compose/lock.py $(VENV)/lock.json > constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache
