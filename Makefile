# Every target sets up its own virtualenv first, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the builds this machine serves from local disk (an unpinned torch would
# pull a multi-GB CUDA build from the registry). timm, needed by Gemma 3n's vision tower, needs torchvision.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: help setup setup-core demo test fuzz bench lint clean

help:
	@echo "make demo   - build a tiny extended Gemma 3n checkpoint, rewrite it, load and run it in stock transformers"
	@echo "make test   - set up and run the test suite"
	@echo "make fuzz   - fuzz the checkpoint readers longer than make test does (tests/test_fuzz.py, 20x the examples)"
	@echo "make bench  - run the benchmarks"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[torch,test]' $(TORCH_PINS)
	@# tests/test_link.py clones shards on a loop-mounted XFS image: mkfs.xfs comes from Debian's xfsprogs
	command -v mkfs.xfs >/dev/null 2>&1 || apt-get install -y -q xfsprogs >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q xfsprogs >/dev/null 2>&1) || \
		echo "warning: could not install xfsprogs (mkfs.xfs); tests/test_link.py will say so"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q tests

fuzz: setup
	VOCABFIX_FUZZ=1 $(PY) -m pytest -q tests/test_fuzz.py

bench: setup
	$(PY) bench/run.py

lint: setup
	$(PY) -m pip install --quiet ruff && $(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo-out bench/out .pytest_cache
