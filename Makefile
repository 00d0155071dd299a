# Every target sets up its own virtualenv first, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the builds this machine serves from local disk (an unpinned torch would
# pull a multi-GB CUDA build from the registry). timm, needed by Gemma 3n's vision tower, needs torchvision.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: help setup setup-core demo test bench lint clean

help:
	@echo "make demo   - build a tiny extended Gemma 3n checkpoint, rewrite it, load and run it in stock transformers"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - run the benchmarks"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[torch,test]' $(TORCH_PINS)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/run.py

lint: setup
	$(PY) -m pip install --quiet ruff && $(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo-out bench/out .pytest_cache
