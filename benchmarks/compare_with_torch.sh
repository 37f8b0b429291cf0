#!/usr/bin/env bash
# Times the PyTorch reference step (../shared/bench/torch_reference.py) and vaegan_jax's train
# step one after the other on this machine, so that their numbers can be compared. Each prints
# one JSON line per configuration. Run the other programs on the machine not at all meanwhile.
#
#   bash benchmarks/compare_with_torch.sh                 # RUNS=3 STEPS=2 by default
#   RUNS=5 STEPS=3 bash benchmarks/compare_with_torch.sh
#
# PyTorch goes into its own venv (.venv-torch, `pip install torch==2.13.0`); vaegan_jax runs
# from .venv (the README's first command). The torch reference weighs real and fake terms
# equally, which is celeba64's ':mar' variant here; the default (Feb) config has one more
# backward pass through the discriminator (see vaegan_jax/steps.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${RUNS:-3}
steps=${STEPS:-2}
reference=${TORCH_REFERENCE:-../shared/bench/torch_reference.py}
torch_python=.venv-torch/bin/python
jax_python=${JAX_PYTHON:-.venv/bin/python}

if [ ! -f "$reference" ]; then
  echo "No PyTorch reference at $reference; set TORCH_REFERENCE=path/to/torch_reference.py." >&2
  exit 1
fi
if [ ! -x "$jax_python" ]; then
  echo "No $jax_python: run the README's first command first, or set JAX_PYTHON." >&2
  exit 1
fi
if [ ! -x "$torch_python" ]; then
  python3 -m venv .venv-torch && .venv-torch/bin/pip install -q torch==2.13.0 numpy
fi

for style in sequential minimal; do
  "$torch_python" "$reference" --style "$style" --runs "$runs" --steps "$steps"
done
"$torch_python" "$reference" --style minimal --bf16 --runs "$runs" --steps "$steps"
for config_arg in mar ''; do
  "$jax_python" benchmarks/train_step.py --config_arg="$config_arg" --dtypes=float32,bfloat16 \
      --runs="$runs" --steps="$steps" 2>&1 | grep -E '^\[|^\{'
done
