# Shoal: `make run` starts the tracker on its defaults, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: run test lint unit bench soak clean

NATIVE := $(wildcard shoal/_native/*.c shoal/_native/*.h)

$(STAMP): pyproject.toml setup.py $(NATIVE)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Shoal needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m shoal serve $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check shoal tests bench
	$(VENV)/bin/mypy --strict shoal
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	$(PY) -m pytest

test: lint unit

bench: $(STAMP)
	bash scripts/install-bench-deps.sh
	$(PY) -m bench $(ARGS)
	$(PY) -m bench scaling

soak: $(STAMP)
	$(PY) -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
