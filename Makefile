# `make test`: a virtual environment from nothing, every distribution installed, lint, the docs
# site (mkdocs --strict) and the tests.
# `make demo`: the main job on the built-in default data.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PLUGIN_DIRS := $(sort $(wildcard plugins/colearn-plugin-*))
# Third-party examples install the way a user installs them: from their own folder.
EXAMPLE_DIRS := $(sort $(wildcard examples/colearn-plugin-*))
STAMP := $(VENV)/.colearn-installed

.PHONY: venv test lint docs pytest demo clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml) \
		demo/requirements.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[test,docs]' $(foreach p,$(PLUGIN_DIRS),-e '$(p)[test]')
	$(PIP) install -q $(foreach p,$(EXAMPLE_DIRS),'./$(p)[test]')
	# The test plugin the core tests use (the misbehaving ones install per test session).
	$(PIP) install -q -e tests/plugins/colearn-plugin-toy
	# The demo's plotting libraries (tests/demo runs the demo's code path).
	$(PIP) install -q -r demo/requirements.txt
	# Meta's ImageBind model code for the parity tests; its declared dependencies (torchaudio,
	# pytorchvideo, decord) would replace this torch, and the code needs none of them.
	$(PIP) install -q --no-deps imagebind-unofficial==0.1.1
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site must build without a warning (broken links, missing API docstrings).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -q -d "$$(mktemp -d)"

pytest: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test: lint docs pytest

# make demo [REPO_ID=user/name (pushes to the Hub, needs HF_TOKEN)] [DEMO_ARGS="--quick --set k=v"]
demo: $(STAMP)
	$(PY) demo/run_demo.py $(if $(REPO_ID),--repo-id $(REPO_ID)) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist runs .pytest_cache .ruff_cache
