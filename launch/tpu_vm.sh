#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (v4-32, v5e-64, ...): the same command on every worker; JAX
# finds the other workers through the TPU metadata.
#
#   TPU_NAME=my-tpu ZONE=us-central2-b launch/tpu_vm.sh configs/sngan_cifar10.py /mnt/b/runs/x \
#       [--config.field=value ...]
#
# Edit: TPU_NAME, ZONE, PROJECT (or gcloud's default), and REPO (where this checkout lives on
# the workers; copy it there first, e.g. `gcloud compute tpus tpu-vm scp --recurse . $TPU_NAME:
# --worker=all`, then `make tpu` on every worker: the pinned CPU set plus libtpu). The
# workdir must be a local path that every worker sees, data.data_dir too: a bucket mounted at the
# same path on every worker (gcsfuse), or a Filestore/NFS share. genimg writes its workdir with
# local file I/O, so a gs:// URL as --workdir is refused rather than becoming a folder "gs:".
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
if [ $# -lt 2 ]; then sed -n '2,13p' "$0"; exit 2; fi
repo=${REPO:-genimg_jax}
config=$1 workdir=$2
shift 2
project=${PROJECT:+--project=$PROJECT}
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $project --worker=all --command \
  "cd $repo && .venv/bin/genimg train --config $config --workdir $workdir \
   --config.parallel.multihost=yes $*"
