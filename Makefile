# The two commands of the README:
#   make example   set up and apply the example layer that ships in examples/
#   make test      set up and run every check CI runs (lint, types, tests)
VENV ?= .venv
PY := $(VENV)/bin/python
CONTAINERD_DIR ?= /var/cache/layerdiff-ci/containerd
REGISTRY_DIR ?= /var/cache/layerdiff-ci/registry
SHELLS_DIR ?= /var/cache/layerdiff-ci/shells
EXAMPLE_DEST ?= /tmp/layerdiff-example

.PHONY: example test setup lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

example: setup
	rm -rf $(EXAMPLE_DEST) && mkdir -p $(EXAMPLE_DEST)
	$(VENV)/bin/layerdiff apply --json examples/hello-layer.tar.gz $(EXAMPLE_DEST)
	find $(EXAMPLE_DEST) | sort

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	@if [ "$$(id -u)" = 0 ]; then bash .ci/fetch-containerd $(CONTAINERD_DIR) \
		&& bash .ci/fetch-registry $(REGISTRY_DIR) && bash .ci/fetch-bench-tools \
		&& bash .ci/fetch-shells $(SHELLS_DIR); \
	else echo "not root: containerd, registry and root-only tests will be skipped"; fi
	LAYERDIFF_CONTAINERD_BIN=$(CONTAINERD_DIR)/root/usr/bin \
	LAYERDIFF_REGISTRY_BIN=$(REGISTRY_DIR)/root/usr/bin/docker-registry \
	LAYERDIFF_SHELLS_BIN=$(SHELLS_DIR)/bin \
	$(VENV)/bin/pytest -q
