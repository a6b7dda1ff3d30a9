#!/usr/bin/env bash
# Downloads into .whl/ the wheels that benchmarks/device_check.sh installs on the GPU machine:
# the packages of requirements.lock that its image lacks (it has JAX with the CUDA plugin, flax,
# optax, orbax-checkpoint, PyTorch, numpy, scipy, ...; /work/.library/device/KINDS.md lists
# them), for Python 3.12 on x86-64 Linux, at the lock's versions. The machine has no network.
#
#   benchmarks/device_wheels.sh        # then: device run, carry .whl, benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
missing="array_record dm-tree docstring_parser googleapis-common-protos immutabledict
importlib_resources ml_collections mlxtend simple-parsing submitit tensorboardX
tensorflow-datasets tensorflow-metadata termcolor toml"
pins=()
for name in $missing; do
  pins+=("$(grep -i -E "^${name}==" requirements.lock | cut -d';' -f1 | tr -d ' ')")
done
rm -rf .whl && mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl "${pins[@]}"
# promise (a tensorflow-datasets requirement) is published as a source archive only: a pure
# Python wheel built here runs there
"$py" -m pip wheel -q --no-deps -w .whl "$(grep -E '^promise==' requirements.lock | cut -d';' -f1)"
ls .whl
du -sh .whl
