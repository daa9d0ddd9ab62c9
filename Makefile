# ordermill: `make run` starts everything, `make test` checks everything.
# The first target that needs it creates .venv and installs the project (quietly, once).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 \
	&& $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& echo $$p && break; done)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install run worker api schedule demo test lint format bench clean

help:
	@echo "make install create .venv and install ordermill and its tools (any target does it once)"
	@echo "make run     start Temporal, the worker and the API (Ctrl-C stops all)"
	@echo "make test    run the whole test suite"
	@echo "make lint    ruff and mypy"
	@echo "make demo    play customers and a carrier against a running 'make run'"
	@echo "make bench   ordermill against the Temporal ceiling (BENCH_ARGS=\"--help\" for options)"
	@echo "make api     only the API (uvicorn), against an already running Temporal"
	@echo "make worker  only the worker, against an already running Temporal"
	@echo "make format  ruff's fixes and formatting"
	@echo "make schedule create or update the nightly reconciliation's Schedule (a cluster)"
	@echo "make clean   remove .venv and .data"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "ordermill needs Python 3.11 or newer" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing ordermill and its tools into $(VENV) (once; log in $(VENV)/install.log)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade pip \
	  && $(PY) -m pip install --disable-pip-version-check -e ".[dev]"; } > $(VENV)/install.log 2>&1 \
	  || { tail -30 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log" >&2; exit 1; }
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run: $(STAMP)
	$(PY) scripts/run.py

demo: $(STAMP)
	$(PY) scripts/demo.py

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

worker: $(STAMP)
	$(PY) worker.py

schedule: $(STAMP)
	$(PY) schedules.py

api: $(STAMP)
	$(PY) -m uvicorn api.main:app --host "$${API_HOST:-127.0.0.1}" --port "$${API_PORT:-8000}"

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
