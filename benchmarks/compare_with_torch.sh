#!/usr/bin/env bash
# Times PyTorch's train step (benchmarks/torch_reference.py) and vaegan_jax's one after the other
# on this machine's CPU, on the same work, and ends with one table of both with their ratios
# (benchmarks/compare_table.py). Run nothing else on the machine meanwhile.
#
#   bash benchmarks/compare_with_torch.sh                 # ROUNDS=2 RUNS=3 STEPS=2 by default
#   RUNS=5 STEPS=3 ROUNDS=3 bash benchmarks/compare_with_torch.sh
#   TORCH_COMPILE=none bash benchmarks/compare_with_torch.sh   # eager PyTorch only (faster)
#   SMOKE=1 bash benchmarks/compare_with_torch.sh         # tiny sizes: checks the plumbing only
#
# PyTorch goes into its own venv (.venv-torch, `pip install torch==2.13.0`; TORCH_PYTHON picks
# another interpreter); vaegan_jax runs from .venv (the README's first command; JAX_PYTHON picks
# another). The same work: JAX's celeba64.py (the authors' February passes) against PyTorch's
# authors_feb, celeba64.py:mar against authors_mar, both with the encoder width FC (1024, the
# authors' code's); PyTorch's sequential style (three retained backward passes, as common ports
# do) is timed beside them. Each PyTorch style runs eager and under torch.compile (mode
# TORCH_COMPILE, 'default'). The host's load drifts over a run's minutes (PyTorch's eager step by
# up to 20% between two runs on 2026-12-07), so the steps that the ratios pair, PyTorch's eager
# ones and JAX's, run back to back, in ROUNDS rounds; the table gives each round's ratio and
# their median. Every program prints one JSON line per configuration and round; they are kept in
# OUT (compare_with_torch.jsonl) for the table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${RUNS:-3}
rounds=${ROUNDS:-2}
steps=${STEPS:-2}
fc=${FC:-1024}
compile=${TORCH_COMPILE:-default}
reference=${TORCH_REFERENCE:-benchmarks/torch_reference.py}
torch_python=${TORCH_PYTHON:-.venv-torch/bin/python}
jax_python=${JAX_PYTHON:-.venv/bin/python}
out=${OUT:-compare_with_torch.jsonl}

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
: > "$out"
torch_row() {     # STYLE MODE: one PyTorch configuration; its JSON line is kept in OUT
  "$torch_python" "$reference" --style "$1" --fc "$fc" --compile "$2" --runs "$runs" \
      --steps "$steps" "${torch_smoke[@]}" | tee -a "$out"
}
for round in $(seq "$rounds"); do      # the paired steps; the other PyTorch rows after them
  echo "Round $round of $rounds"
  for style in authors_feb authors_mar; do
    torch_row "$style" none
  done
  "$jax_python" benchmarks/train_step.py --config_arg=,mar --encoder_hidden_features="$fc" \
      --dtypes=float32 --runs="$runs" --steps="$steps" "${jax_smoke[@]}" 2>&1 \
      | grep -E '^\[|^\{' | tee -a "$out"
done
torch_row sequential none
if [ "$compile" != none ]; then
  for style in authors_feb authors_mar sequential; do
    torch_row "$style" "$compile"
  done
fi
"$jax_python" benchmarks/compare_table.py "$out"
