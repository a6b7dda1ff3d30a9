# `make train` / `make test` create .venv from the pinned lock when it is missing, then run.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready

.PHONY: train test lint bench clean cuda12 cuda13 tpu

$(READY): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(READY)

# The accelerator jaxlib in the same .venv (README, "Multi-device, multi-host, GPU and TPU"): the pinned CUDA 12 or TPU
# additions, or CUDA 13 as JAX's extra resolves it (not pinned: no CUDA 13 wheels on the index
# the lock was made from).
cuda12 tpu: $(READY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-$@.lock
cuda13: $(READY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "jax[cuda13]==$$($(VENV)/bin/python -c 'import jax; print(jax.__version__)')"

train: $(READY)  ## the main job: DCGAN on the bundled MNIST digits, sample grids in runs/
	$(VENV)/bin/genimg train --config configs/dcgan_mnist.py --workdir runs/dcgan_mnist

# Two workers, each taking whole test files (module fixtures are computed once): 1.5x faster
# than one process on the 2-core machine (docs/testing.md). `make test WORKERS=0` runs serially.
# A worker that dies ends the run at once, naming its test: pytest-xdist 3.8 can wait forever
# after replacing a dead worker under --dist loadfile (pytest-xdist issues 784, 1378).
WORKERS ?= 2
test: $(READY)
	$(VENV)/bin/python -m pytest -q -n $(WORKERS) --dist loadfile --max-worker-restart=0

lint: $(READY)
	$(VENV)/bin/ruff check genimg_jax configs tests benchmarks

clean:
	rm -rf $(VENV) runs
