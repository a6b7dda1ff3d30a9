# `make train` / `make test` create .venv from the pinned lock when it is missing, then run.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready

.PHONY: train test lint bench clean

$(READY): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(READY)

train: $(READY)  ## the main job: DCGAN on the bundled MNIST digits, sample grids in runs/
	$(VENV)/bin/genimg train --config configs/dcgan_mnist.py --workdir runs/dcgan_mnist

# Two workers, each taking whole test files (module fixtures are computed once): 1.5x faster
# than one process on the 2-core machine (README, Tests). `make test WORKERS=0` runs serially.
WORKERS ?= 2
test: $(READY)
	$(VENV)/bin/python -m pytest -q -n $(WORKERS) --dist loadfile

lint: $(READY)
	$(VENV)/bin/ruff check genimg_jax configs tests benchmarks

clean:
	rm -rf $(VENV) runs
