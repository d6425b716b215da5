# Shoal: `make run` starts the tracker on its defaults, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

# `make test` runs the suite on both in-memory engines, side by side: the default pass (the
# compiled engine when built) runs every test; the Python pass (SHOAL_ENGINE=python) runs
# the tests whose run depends on the engine choice (tests/conftest.py says which run once,
# and checks that they read no engine choice). Each pass spreads its tests over XDIST
# pytest-xdist workers; most tests wait on sockets and other processes, so more workers
# than cores pay. `make test-quick` is lint and the default pass alone.
XDIST  ?= 3
PYTEST := $(PY) -m pytest -n $(XDIST) --dist worksteal

.PHONY: run test test-quick lint unit unit-both unit-native unit-python bench soak clean

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

unit-native: $(STAMP)
	SHOAL_ENGINE= $(PYTEST)

unit-python: $(STAMP)
	SHOAL_ENGINE=python $(PYTEST) --engine-pass=python

# Both passes at once; each one's output is shown whole when it ends.
unit-both: $(STAMP)
	@echo "pytest: the default engine pass and the SHOAL_ENGINE=python pass, side by side"
	@$(MAKE) --no-print-directory --output-sync=target -j2 unit-native unit-python

test: lint unit-both

test-quick: lint unit-native

bench: $(STAMP)
	bash scripts/install-bench-deps.sh
	$(PY) -m bench $(ARGS)
	$(PY) -m bench scaling

soak: $(STAMP)
	$(PY) -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
