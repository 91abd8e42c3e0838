# Quick start: `make demo` and `make test` on a fresh machine. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

# torch first and pinned: an unpinned torch pulls GBs of CUDA packages.
$(STAMP): requirements.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	# erqa is the reference for our ERQA; --no-deps: it would pull the GUI opencv-python over the headless one
	$(PY) -m pip install -q --no-deps erqa==1.1.2
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q test

demo: setup
	$(VENV)/bin/spatialq demo --out demo_out

clean:
	rm -rf demo_out build *.egg-info
