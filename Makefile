# Two commands do everything on a fresh machine:
#   make serve   start the server on notebooks/ with the embedded disk cache
#   make test    install what the tests need (Python packages, redis-server, chromium) and run them all

VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: install install-test system-deps serve test lint check bench bench-peers bench-gallery soak lock clean

# Serving needs the package alone; the tests add their tools on top.
$(VENV)/.runtime: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.runtime

install-test: $(VENV)/.installed

system-deps:
	scripts/system-deps

serve: install
	$(VENV)/bin/publisher serve notebooks --port $(PORT)

lint: install-test
	$(VENV)/bin/ruff check publisher tests bench
	$(VENV)/bin/ruff format --check publisher tests bench
	$(VENV)/bin/mypy publisher

test: install-test system-deps lint
	$(PY) -m pytest

check: test

bench: install-test system-deps
	$(PY) bench/latency.py
	$(PY) bench/latency.py --notebook timeseries

bench-peers: install-test
	$(PY) bench/peers.py

bench-gallery: install-test
	$(PY) bench/gallery.py

soak: install-test
	$(PY) bench/soak.py

# Pin the newest releases that pyproject.toml allows: resolve in a throwaway venv, freeze.
lock:
	rm -rf /tmp/publisher-lock && python3 -m venv /tmp/publisher-lock
	/tmp/publisher-lock/bin/pip install -q --upgrade pip
	/tmp/publisher-lock/bin/pip install -q -e '.[test]'
	{ sed -n '1,2p' constraints.txt; /tmp/publisher-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf .publisher-cache .pytest_cache .mypy_cache .ruff_cache test-artifacts
