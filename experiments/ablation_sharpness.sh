#!/usr/bin/env bash
# Issue 48's screen: which training options lower sample FID without lowering the sharpness
# ratio, with the fitted priors' samples measured beside N(0, I)'s. Four runs per dataset give
# eight measured variants, since the EMA reads nothing that trains: a run with an EMA and
# quality.raw_decoder=True measures the same run with and without it.
#   A  faithful training, EMA 0.99              -> faithful (raw) and EMA 0.99
#   B  R1 (gamma 1), EMA 0.99                   -> R1 alone (raw) and today's :ours
#   C  R1 (gamma 0.1), EMA 0.999 from step 500  -> R1 0.1 alone (raw) and with a late, slow EMA
#   D  faithful training, EMA 0.999 from step 500 -> a late, slow EMA alone
# DATASET=faces (the synthetic faces) or digits (experiments/digits_folder.py, prepared into
# DATA_DIR as its docstring says); STEPS, SEED and OUT as below. A stopped run resumes when the
# script is run again. The quality lines go to experiments/ablation_sharpness/, and
# `.venv/bin/python experiments/ablation_table.py --folder=experiments/ablation_sharpness` makes
# the table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATASET=${DATASET:-faces}
STEPS=${STEPS:-1000}
SEED=${SEED:-0}
OUT=${OUT:-runs/ablation_sharpness}
DATA_DIR=${DATA_DIR:-~/data}
RUNS=${RUNS:-A B C D}
LINES=experiments/ablation_sharpness

common=(--config.num_train_steps="$STEPS" --config.quality.every_steps=$((STEPS / 2))
        --config.seed="$SEED" "--config.quality.priors=('gaussian','gmm:10')")
if [ "$DATASET" = digits ]; then
  common+=(--config.data.name=digits --config.data.data_dir="$DATA_DIR"
           --config.data.synthetic_images=0 --config.data.train_split=train
           --config.model.image_channels=1)
fi
late=$((STEPS / 2))
declare -A options=(
  [A]="--config.decoder_ema_decay=0.99 --config.quality.raw_decoder=True"
  [B]="--config.decoder_ema_decay=0.99 --config.quality.raw_decoder=True --config.loss.r1_weight=1.0"
  [C]="--config.decoder_ema_decay=0.999 --config.decoder_ema_start=$late --config.quality.raw_decoder=True --config.loss.r1_weight=0.1"
  [D]="--config.decoder_ema_decay=0.999 --config.decoder_ema_start=$late"
)
declare -A measured=(
  [A]="faithful ema99" [B]="r1 r1_ema99" [C]="r1w01 r1w01_ema999late" [D]="- ema999late"
)
mkdir -p "$LINES"
for run in $RUNS; do
  workdir="$OUT/${DATASET}_${run}_s$SEED"
  # shellcheck disable=SC2086
  .venv/bin/vaegan-train --workdir="$workdir" "${common[@]}" ${options[$run]}
  read -r raw averaged <<< "${measured[$run]}"
  grep '"kind": "quality"' "$workdir/metrics.jsonl" > "$LINES/${DATASET}_${averaged}_s$SEED.jsonl"
  if [ "$raw" != - ]; then
    grep '"kind": "quality_raw_decoder"' "$workdir/metrics.jsonl" \
        > "$LINES/${DATASET}_${raw}_s$SEED.jsonl"
  fi
done
