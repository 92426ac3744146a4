# Two entry points for a fresh machine (both set up only what is missing):
#   make run   - set up, then fit the built-in synthetic talking head (the main job)
#   make test  - set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench clean

setup:
	VENV=$(VENV) bash scripts/setup.sh

# RAD-NeRF's two stages on the built-in synthetic head: the head, then the torso behind it.
# --resume: an interrupted `make run` continues the stage it stopped in; a finished one re-renders.
# The head command is skipped once the workspace holds the torso stage (its --resume would
# continue the torso with the head's flags).
WORKSPACE ?= outputs/talking_head
TORSO_ITERS ?= 1500

run: setup
	@if [ -e $(WORKSPACE)/checkpoints/last_torso_checkpoint ]; then \
		echo "make run: the head stage is done ($(WORKSPACE) holds the torso stage)"; \
	else \
		$(PY) examples/fit_talking_head.py --workspace $(WORKSPACE) --resume; \
	fi
	$(PY) examples/fit_talking_head.py --workspace $(WORKSPACE) --torso --resume --iters $(TORSO_ITERS)

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf build pt3d_radnerf/_C*.so
