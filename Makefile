# sdfarm: `make run` serves the farm, `make test` runs the tests. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; on a GPU machine use e.g. `make run TORCH=torch` for the CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install run test lint bench wheelhouse clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e ".[test]"
	touch $@

run: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/sdfarm up

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check api worker models sdfarm tests migrations bench

bench: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/sdfarm bench

# Wheels of sdfarm's dependencies for an offline CUDA machine (Python 3.12, manylinux x86-64): all but torch
# and what such a machine already has, at most 60 MB; scripts/gpu-check.sh installs them there with --no-index.
WHEELHOUSE ?= wheelhouse
GPU_PYTHON ?= 3.12
wheelhouse: install
	$(PY) scripts/wheelhouse.py --out $(WHEELHOUSE) --python-version $(GPU_PYTHON)

clean:
	rm -rf $(VENV) data
