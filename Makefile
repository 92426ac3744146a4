# Two entry points for a fresh machine (both set up only what is missing):
#   make run   - set up, then fit the built-in synthetic talking head (the main job)
#   make test  - set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench clean

setup:
	VENV=$(VENV) bash scripts/setup.sh

# --resume: an interrupted `make run` continues where it stopped; a finished one re-renders.
run: setup
	$(PY) examples/fit_talking_head.py --resume

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf build pt3d_radnerf/_C*.so
