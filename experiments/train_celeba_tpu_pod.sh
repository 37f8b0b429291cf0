#!/usr/bin/env bash
# The paper's VAE/GAN on CelebA 64x64 on a Cloud TPU VM pod slice: every worker runs the same
# command; jax.distributed finds the pod's settings itself (--distributed=true), each process
# reads its own part of every global batch, and all take part in checkpointing.
#
#   REPO=https://...git TPU_NAME=my-v4-32 ZONE=us-central2-b SHARED=/mnt/shared \
#       bash experiments/train_celeba_tpu_pod.sh
#
# SHARED must be the same folder on every worker: a Filestore mount or a bucket mounted with
# gcsfuse (the code reads and writes local paths; gs:// URLs are not read directly yet). Prepare
# CelebA into it once, from one worker or any machine:
#   vaegan-prepare --raw_dir=CELEBA_RAW --data_dir=$SHARED/tensorflow_datasets --resolution=64
# The global batch must be a multiple of the pod's device count (64 fits up to 64 devices; the
# paper used 64). Time: not yet measured on a TPU.
set -euo pipefail
: "${TPU_NAME:?}" "${ZONE:?}" "${SHARED:?}"
: "${REPO:?Set REPO to the git URL of this project (your fork or mirror).}"
GLOBAL_BATCH=${GLOBAL_BATCH:-64}
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  [ -d vaegan_jax ] || git clone $REPO vaegan_jax
  cd vaegan_jax
  [ -d .venv ] || (python3 -m venv .venv && .venv/bin/pip install -e . 'jax[tpu]')
  .venv/bin/python -m vaegan_jax.training.main --distributed=true \
      --config=vaegan_jax/configs/celeba64.py --workdir=$SHARED/runs/celeba64 \
      --config.data.data_dir=$SHARED/tensorflow_datasets \
      --config.global_batch_size=$GLOBAL_BATCH"
