# Two entry points for a fresh machine (both set up only what is missing):
#   make run   - set up, then fit the built-in synthetic talking head (the main job)
#   make test  - set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench clean

setup:
	VENV=$(VENV) bash scripts/setup.sh

run: setup
	$(PY) $(if $(wildcard examples/fit_talking_head.py),examples/fit_talking_head.py,examples/smoke_render.py)

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf build pt3d_radnerf/_C*.so
