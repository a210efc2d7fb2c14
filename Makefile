# Two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
PYTHON_BIN := $(shell scripts/find-python)
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ladder
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: help install run test lint fmt services-check chromium bench worker screenshots soak

help:
	@echo "make run    - install, migrate, seed the demo and serve http://127.0.0.1:8000"
	@echo "make test   - install and run the whole suite on PostgreSQL + Redis"
	@echo "make lint   - ruff check + ruff format --check + lint-imports (pyproject.toml)"
	@echo "make screenshots - refresh docs/screenshots/ from the browser tests"
	@echo "make bench  - bench/gateway.py, bench/queue.py and bench/longpoll.py (PostgreSQL)"
	@echo "make soak   - bench/soak.py: 5 min of mixed load, then every run accounted for"

$(UV):
	@test -n "$(PYTHON_BIN)" || { echo "error: no Python >= 3.12 (see scripts/find-python)"; exit 1; }
	$(PYTHON_BIN) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --python $(PYTHON_BIN)
	$(PY) -m traces.names_build
	@touch $@

install: $(VENV)/.installed

# Development mode: the embedded keys, plain http, known demo passwords (README, "Configuration").
DEV_MODE := LADDER_DEV_MODE=1

run: install
	$(DEV_MODE) $(PY) manage.py migrate --noinput
	@# The worked example's eleven weeks (docs/worked-example.md), once: about 80 s.
	$(DEV_MODE) $(PY) manage.py simulate support-refund --runs 2000 --seed 7 --if-new
	$(DEV_MODE) $(PY) manage.py seed_demo
	@echo "Serving on http://127.0.0.1:8000 (Ctrl-C to stop)"
	$(DEV_MODE) $(PY) manage.py runserver 127.0.0.1:8000

services-check: install
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) scripts/check_services.py

chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)) ; \
	  else \
	    echo "error: the browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; \
	  fi; \
	fi

test: install services-check chromium
	$(DEV_MODE) DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

# Refresh the screenshots the README shows (test runs write theirs to test-results/).
screenshots: install services-check chromium
	LADDER_DEV_MODE=1 LADDER_SCREENSHOTS=docs/screenshots DATABASE_URL=$(TEST_DATABASE_URL) \
	  REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -q -m browser

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# -B: the worker also runs Celery beat, the periodic sweeps of CELERY_BEAT_SCHEDULE (review
# deadlines, docs/deadlines.md; execution re-dispatch, docs/execution.md); its schedule file
# stays out of the work tree. With several workers, run them without -B beside one
# `celery -A ladder beat`.
worker: install
	$(VENV)/bin/celery -A ladder worker -B -s $(VENV)/celerybeat-schedule -l info

bench: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/gateway.py
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/queue.py
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/longpoll.py

# Five minutes of mixed load on gunicorn, PostgreSQL (its own database, ladder_soak, made
# afresh), a private redis-server and a Celery worker; then verify_traces and the
# accounting of every run (bench/README.md, "Soak"). SOAK_ARGS="--seconds 30" for a short one.
soak: install
	$(PY) bench/soak.py $(SOAK_ARGS)
