#!/usr/bin/env bash
# Times the PyTorch reference step (../shared/bench/torch_reference.py) and vaegan_jax's train
# step one after the other on this machine, so that their numbers can be compared. Each prints
# one JSON line per configuration. Run the other programs on the machine not at all meanwhile.
#
#   bash benchmarks/compare_with_torch.sh                 # RUNS=3 STEPS=2 by default
#   RUNS=5 STEPS=3 bash benchmarks/compare_with_torch.sh
#   SMOKE=1 bash benchmarks/compare_with_torch.sh         # tiny sizes: checks the plumbing only
#
# PyTorch goes into its own venv (.venv-torch, `pip install torch==2.13.0`; TORCH_PYTHON picks
# another interpreter); vaegan_jax runs from .venv (the README's first command; JAX_PYTHON picks
# another). The torch styles: 'sequential' (three retained backward passes, as common ports do),
# 'minimal' (the least work: one forward pass, per-network pullbacks) and 'authors_mar' (the
# authors' March passes, the same work as celeba64.py:mar here). JAX runs the authors' passes
# (Mar, then Feb) in float32 and bfloat16, then our joint passes in float32. Both sides use the
# paper's encoder width 2048 (the torch reference's --fc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${RUNS:-3}
steps=${STEPS:-2}
reference=${TORCH_REFERENCE:-../shared/bench/torch_reference.py}
torch_python=${TORCH_PYTHON:-.venv-torch/bin/python}
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

torch_smoke=()
jax_smoke=()
if [ -n "${SMOKE:-}" ]; then     # the same command lines, with tiny sizes appended
  torch_smoke=(--batch 2 --runs 1 --steps 1)
  jax_smoke=(--smoke)
fi

for style in sequential minimal authors_mar; do
  "$torch_python" "$reference" --style "$style" --fc 2048 --runs "$runs" --steps "$steps" \
      "${torch_smoke[@]}"
done
"$torch_python" "$reference" --style minimal --bf16 --fc 2048 --runs "$runs" --steps "$steps" \
    "${torch_smoke[@]}"
for config_arg in mar ''; do
  "$jax_python" benchmarks/train_step.py --config_arg="$config_arg" --encoder_hidden_features=2048 \
      --dtypes=float32,bfloat16 --runs="$runs" --steps="$steps" "${jax_smoke[@]}" 2>&1 \
      | grep -E '^\[|^\{'
done
# Our joint passes (model.passes='joint'), float32, for the cost of the authors' separate ones.
for config_arg in mar ''; do
  "$jax_python" benchmarks/train_step.py --config_arg="$config_arg" --passes=joint \
      --encoder_hidden_features=2048 --dtypes=float32 --runs="$runs" --steps="$steps" \
      "${jax_smoke[@]}" 2>&1 | grep -E '^\[|^\{'
done
