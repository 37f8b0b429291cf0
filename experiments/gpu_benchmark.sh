#!/usr/bin/env bash
# The train step on one GPU, JAX against PyTorch on the same work, in one table with ratios, peak
# memory and compile times (benchmarks/compare_table.py), in about five minutes:
# - vaegan_jax: celeba64.py (the authors' Feb passes) and celeba64.py:mar, float32 and bfloat16,
#   each at one step per dispatch and at K=16 (steps_per_dispatch), each then traced for two
#   calls: its kernels per step and where their time goes (benchmarks/trace_summary.py);
# - PyTorch (benchmarks/torch_reference.py, the machine's own torch): authors_feb and
#   authors_mar, eager with --tf32 (as XLA's default precision), eager with --bf16, and
#   --compile reduce-overhead (CUDA graphs) with --bf16; where a compiled variant fails, the line
#   says so and --compile default is timed instead.
#
#   bash experiments/gpu_benchmark.sh            # from the repository root, after installing
#   SMOKE=1 bash experiments/gpu_benchmark.sh    # any backend, tiny sizes, PyTorch on the CPU
#
# PYTHON runs vaegan_jax, TORCH_PYTHON the reference (default: the same interpreter), OUT keeps
# the JSON lines (gpu_benchmark.jsonl), PROFILE_DIR the traces (beside OUT). Batch 64 per device,
# 64x64, the encoder width 1024 of the authors' code on both sides.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
torch_python=${TORCH_PYTHON:-$python}
reference=${TORCH_REFERENCE:-benchmarks/torch_reference.py}
out=${OUT:-gpu_benchmark.jsonl}
profile_dir=${PROFILE_DIR:-${out%.jsonl}_profile}
jax_args=(--runs=5 --steps=20)
torch_args=(--device cuda --runs 5 --steps 20)
if [ -n "${SMOKE:-}" ]; then    # the same command lines, tiny sizes, on any backend
  jax_args=(--smoke)
  torch_args=(--device cpu --batch 2 --runs 1 --steps 1)
else
  "$python" -c 'import jax; assert jax.default_backend() == "gpu", jax.devices()' || {
    echo "No GPU visible to jax: install jax with CUDA (pip install 'jax[cuda12]') first." >&2
    exit 1
  }
fi

: > "$out"
compiled=$(mktemp)
failure=$(mktemp)
trap 'rm -f "$compiled" "$failure"' EXIT
"$python" benchmarks/train_step.py --config_arg=,mar --dtypes=float32,bfloat16 \
    --steps_per_dispatch=1,16 --profile_dir="$profile_dir" "${jax_args[@]}" 2>&1 |
    grep -E '^\[|^\{|^profile in|^No profile|^op kind|\| [0-9.]+ \| [0-9.]+% \| [0-9.]+$' |
    tee -a "$out"
for style in authors_feb authors_mar; do
  "$torch_python" "$reference" --style "$style" --fc 1024 --tf32 "${torch_args[@]}" | tee -a "$out"
  "$torch_python" "$reference" --style "$style" --fc 1024 --bf16 "${torch_args[@]}" | tee -a "$out"
  if ! "$torch_python" "$reference" --style "$style" --fc 1024 --bf16 --compile reduce-overhead \
      "${torch_args[@]}" > "$compiled" 2> "$failure"; then
    echo "PyTorch $style --compile reduce-overhead failed: $(tail -n 1 "$failure")"
    "$torch_python" "$reference" --style "$style" --fc 1024 --bf16 --compile default \
        "${torch_args[@]}" > "$compiled"
  fi
  tee -a "$out" < "$compiled"
done
"$python" benchmarks/compare_table.py "$out"
