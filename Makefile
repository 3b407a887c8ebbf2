# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.behaviorlens-installed
PORT ?= 8501

.PHONY: setup demo test browser-deps bench clean-workspace

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

## Set up, put the sample dataset in the workspace, start training the demo model in the background
## (once: nothing starts when a run of it is done or training), and serve the dashboard meanwhile,
## on 127.0.0.1 only (.streamlit/config.toml) and with no outside call (serve.py).
demo: setup
	$(VENV)/bin/behaviorlens sample --train
	$(PY) serve.py --server.port $(PORT)

## Chromium for the browser test (Debian package; needs root when missing).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package (the browser test needs it)"; exit 1; fi; }

## Set up, then run the whole test suite, the browser test included, one worker per core
## (a test module stays on one worker; each worker computes on one thread, tests/conftest.py).
test: setup browser-deps
	$(PY) -m pytest -n auto --dist loadscope

bench: setup
	$(PY) bench/ingest.py

clean-workspace:
	rm -rf workspace
