#!/usr/bin/env bash
# The device check: genimg_jax on an accelerator in one call (issue #25), under 8 minutes on an
# H200. Writes everything into OUTDIR: a log per part, JSON results, and status.jsonl (one line
# per part: name, exit code, seconds). Exit status: 0 when every part passed.
#
#   benchmarks/device_check.sh OUTDIR           # on the GPU machine, from the repository root
#   JAX_PLATFORMS=cpu benchmarks/device_check.sh OUTDIR --tiny   # the dry run on a CPU
#
# Parts: the devices JAX sees; the tests marked `accelerator` (every family's step, resume
# bitwise with deterministic=True, bf16, vectorized vmap members equal to solo runs, a user's
# family); benchmarks/steps.py against PyTorch eager and torch.compile at accelerator sizes in
# float32 and bfloat16 (with compile times); benchmarks/sweep.py for K = 1, 4 and 16 members;
# benchmarks/loop_overhead.py (the trainer's images/s against the bare step's); two
# deterministic runs compared bitwise.
#
# Packages the machine lacks travel as wheels in .whl/ (benchmarks/device_wheels.sh makes them);
# they are installed into /tmp/site first. With --tiny every part runs at toy sizes.
set -u -o pipefail
out=${1:?usage: benchmarks/device_check.sh OUTDIR [--tiny]}
tiny=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

wheel_python=3.12  # benchmarks/device_wheels.sh fetches them for the GPU machine's Python
here=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if compgen -G ".whl/*.whl" >/dev/null && [ "$here" != "$wheel_python" ]; then
  echo "not installing .whl/: its wheels are for Python $wheel_python, this is $here"
elif compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TFDS_DATA_DIR=${TFDS_DATA_DIR:-$(mktemp -d)}  # the bundled data sets, prepared offline

failed=0
part() {  # part NAME SECONDS COMMAND...: runs it within SECONDS, logs it, records its status
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name (at most ${limit} s): $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start))}" >>"$out/status.jsonl"
  tail -n 4 "$out/$name.log"
  [ "$rc" -eq 0 ] || failed=1
}

# Time limits per part keep the whole check inside one 10-minute device call (8 minutes of parts,
# in order of importance); the dry run on a 2-core CPU gets more.
if [ "$tiny" = "--tiny" ]; then
  steps_args=(--tiny --no-compile --dtypes float32,bfloat16)
  sweep_args=(--tiny --ks 1,4 --no-processes)
  loop_args=(--steps 60 --segment 20 --rounds 1)
  det_args=(--tiny --steps 10)
  limits=(600 600 600 600 600 600)
else
  steps_args=(--device --quick --dtypes float32,bfloat16)
  sweep_args=(--quick --ks 1,4,16 --no-processes)
  loop_args=(--tiny --dispatch current)  # millisecond steps: the loop's host cost shows
  det_args=(--steps 200)
  limits=(150 180 45 45 30 45)
fi

part devices 60 "$py" -c "
import json, jax, jaxlib, sys
import genimg_jax
facts = {'python': sys.version.split()[0], 'jax': jax.__version__, 'jaxlib': jaxlib.__version__,
         'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
         'device_kind': jax.devices()[0].device_kind}
print(json.dumps(facts))
json.dump(facts, open('$out/devices.json', 'w'), indent=2)"
part tests "${limits[0]}" "$py" -m pytest -q -m accelerator -p no:cacheprovider \
  --junitxml="$out/tests.xml" tests
part steps "${limits[1]}" "$py" benchmarks/steps.py "${steps_args[@]}" --json "$out/steps.json"
part sweep "${limits[2]}" "$py" benchmarks/sweep.py "${sweep_args[@]}" --json "$out/sweep.json"
part loop "${limits[3]}" "$py" benchmarks/loop_overhead.py "${loop_args[@]}" --json "$out/loop.json"
part loop_k10 "${limits[5]}" "$py" benchmarks/loop_overhead.py "${loop_args[@]}" \
  --steps-per-dispatch 10 --json "$out/loop_k10.json"
part deterministic "${limits[4]}" "$py" benchmarks/deterministic_runs.py "${det_args[@]}" \
  --json "$out/deterministic.json"

echo "status: $(tr '\n' ' ' <"$out/status.jsonl")"
exit "$failed"
