# Two commands matter: `make demo` runs sealq on the embedded local AWS stand-in,
# `make test` runs lint, types and the whole test suite. Both create what they need: the
# stand-ins' venvs (ministack; LocalStack from a Python 3.13, see README) under $SEALQ_STANDIN_HOME.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SEALQ_STANDIN_HOME ?= $(CURDIR)/.emu

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

lint: setup
	$(BIN)/ruff check producer worker tests bench docker
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/sealq demo

bench: setup
	$(BIN)/python bench/envelope.py

clean:
	rm -rf $(VENV) .emu .pytest_cache .mypy_cache .ruff_cache
