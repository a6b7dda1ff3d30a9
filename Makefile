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

test: $(READY)
	$(VENV)/bin/python -m pytest -q

lint: $(READY)
	$(VENV)/bin/ruff check genimg_jax configs tests benchmarks

clean:
	rm -rf $(VENV) runs
