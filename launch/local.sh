#!/usr/bin/env bash
# Train on one machine: all its devices in one process, or several processes over 127.0.0.1
# (exactly the code path of a multi-host run, handy to test one before paying for a cluster).
#
#   launch/local.sh CONFIG WORKDIR [--config.field=value ...]
#
#   DEVICES=N      on CPU, simulate N devices per process (sets XLA_FLAGS); GPUs/TPUs: leave unset
#   PROCESSES=P    start P processes joined by jax.distributed over 127.0.0.1 (default 1)
#   PORT=12345     coordinator port for PROCESSES > 1 (default: a free one)
#   GENIMG=path    the genimg executable (default: .venv/bin/genimg of this checkout)
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,12p' "$0"; exit 2; fi
root=$(cd "$(dirname "$0")/.." && pwd)
genimg=${GENIMG:-$root/.venv/bin/genimg}
config=$1 workdir=$2
shift 2
processes=${PROCESSES:-1}
if [ -n "${DEVICES:-}" ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES"
fi
if [ "$processes" -eq 1 ]; then
  exec "$genimg" train --config "$config" --workdir "$workdir" "$@"
fi
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < processes; i++)); do
  "$genimg" train --config "$config" --workdir "$workdir" \
    --config.parallel.coordinator_address="127.0.0.1:$port" \
    --config.parallel.num_processes="$processes" --config.parallel.process_id="$i" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
