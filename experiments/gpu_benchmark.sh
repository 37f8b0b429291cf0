#!/usr/bin/env bash
# The train-step benchmark on a single GPU host: the paper's config (64x64, batch 64 per device)
# in float32 and bfloat16, then the March-2016 variant, each ending in one JSON line.
#
#   bash experiments/gpu_benchmark.sh            # from the repository root, after installing
#   SMOKE=1 bash experiments/gpu_benchmark.sh    # any backend, tiny config: checks the script
#
# On GPU, model.conv_gradients='auto' keeps XLA's (cuDNN's) convolution gradients. Expect
# compile times of tens of seconds and step times of tens of milliseconds; see the README for
# measured numbers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
smoke=()
if [ -n "${SMOKE:-}" ]; then
  smoke=(--smoke)        # the same command lines, on the tiny config and any backend
else
  "$python" -c 'import jax; assert jax.default_backend() == "gpu", jax.devices()' || {
    echo "No GPU visible to jax: install jax with CUDA (pip install 'jax[cuda12]') first." >&2
    exit 1
  }
fi
for config_arg in '' mar; do
  "$python" benchmarks/train_step.py --config_arg="$config_arg" --dtypes=float32,bfloat16 \
      --runs=5 --steps=20 "${smoke[@]}"
done
