#!/usr/bin/env bash
# The paper's VAE/GAN on CelebA 64x64 on one GPU host (all its GPUs, one process).
#
#   CELEBA_RAW=~/celeba bash experiments/train_celeba_gpu.sh [extra --config.key=value ...]
#
# CELEBA_RAW holds CelebA's raw files (img_align_celeba.zip, list_attr_celeba.txt,
# list_eval_partition.txt). The first run prepares them once into $DATA_DIR (at most about 2.5
# minutes: 1,500 images/s measured on 2 cores) and makes the authors' 600,000 augmented copies
# of the training images (docs/data.md gives their time and disk), then trains;
# rerunning the same command resumes. --config.data.augmented_copies=0 trains on the images as
# they are.
# Time: on one H200 the step takes 11.5 ms in float32 (gpu_benchmark.sh), and a 3,000-step run
# on CelebA-format data trained at that speed (5,400-5,500 images/s), so the config's 37,500
# steps take about 7 minutes plus evaluations (measured 2026-11-30; docs/scaling.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
: "${CELEBA_RAW:?Set CELEBA_RAW to the folder with CelebA's raw files.}"
DATA_DIR=${DATA_DIR:-$HOME/tensorflow_datasets}
WORKDIR=${WORKDIR:-runs/celeba64}
"$python" -c 'import jax; assert jax.default_backend() == "gpu", jax.devices()' || {
  echo "No GPU visible to jax: install jax with CUDA (pip install 'jax[cuda12]') first." >&2
  exit 1
}
"$python" -m vaegan_jax.training.main --config=vaegan_jax/configs/celeba64.py --workdir="$WORKDIR" \
    --config.data.raw_dir="$CELEBA_RAW" --config.data.data_dir="$DATA_DIR" "$@"
