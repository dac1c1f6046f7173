# Two commands do everything on a fresh machine:
#   make serve   start the server on notebooks/ with the embedded disk cache
#   make test    install what the tests need (Python packages, redis-server, chromium) and run them all

VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: install system-deps serve test lint check bench soak clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

system-deps:
	scripts/system-deps

serve: install
	$(VENV)/bin/publisher serve notebooks --port $(PORT)

lint: install
	$(VENV)/bin/ruff check publisher tests bench
	$(VENV)/bin/ruff format --check publisher tests bench
	$(VENV)/bin/mypy publisher

test: install system-deps lint
	$(PY) -m pytest

check: test

bench: install system-deps
	$(PY) bench/latency.py
	$(PY) bench/latency.py --notebook timeseries

soak: install
	$(PY) bench/soak.py

clean:
	rm -rf .publisher-cache .pytest_cache .mypy_cache .ruff_cache test-artifacts
