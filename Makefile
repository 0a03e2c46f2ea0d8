# Set-up and the two entry points of the README: `make demo` and `make test`.
# Both create .venv (with Python 3.11) and install the package into it first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make demo AUDIO=path/to/folder` uses your recordings instead of synthetic ones.
AUDIO ?=
DEMO := demo
# About 90 seconds of training on a 2-core CPU (5.6 steps/s, benchmarks/README.md).
DEMO_STEPS ?= 500
ifeq ($(AUDIO),)
RECORDS := $(DEMO)/tfrecords
RUN := $(DEMO)/run
else
RECORDS := $(DEMO)/user-tfrecords
RUN := $(DEMO)/user-run
endif

.PHONY: install demo test test-fast lint clean-demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "orca_gan needs Python 3.11 (tensorflow-io 0.37.1 + TensorFlow 2.17); set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam]'
	touch $(STAMP)

demo: install
ifeq ($(AUDIO),)
	$(PY) bin/synthesize_scene --output_dir $(DEMO)/audio --num_files 6 --duration_s 120
	$(PY) bin/make_tfrecords --input $(DEMO)/audio --output_dir $(RECORDS)
else
	$(PY) bin/make_tfrecords --input '$(AUDIO)' --output_dir $(RECORDS)
endif
	$(PY) bin/train --tfrecords $(RECORDS) --logdir $(RUN) --steps $(DEMO_STEPS)
	@echo "demo: generated (top) next to real (bottom) sequences: $(RUN)/samples.png"
	@echo "demo: TensorBoard: $(VENV)/bin/tensorboard --logdir $(RUN)"

# On every core, at most 4 (about 5 minutes on 2 cores).
test: install
	$(PY) -m pytest -q -n auto --maxprocesses=4

# ruff (pyproject.toml) on everything, mypy on the package and the benchmarks; CI runs
# this before the tests.
lint: install
	$(VENV)/bin/ruff check orca_gan benchmarks tests bin
	$(VENV)/bin/mypy

# The inner loop: everything but the tests marked slow (apps in subprocesses, training).
test-fast: install
	$(PY) -m pytest -q -m 'not slow'

clean-demo:
	rm -rf $(DEMO)
