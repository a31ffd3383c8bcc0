#!/usr/bin/env bash
# fp32 and bf16 training side by side (same machine load), one thread each, 150 steps;
# `train/cpu_seconds` at steps 50, 100, 150 in <out>/paired_<precision>/csv/.
#   bash experiments/bf16_training/paired.sh <train videos> <cityCC0.mpg> <a validation clip> <out>
set -euo pipefail
train=$1 city=$2 val=$3 out=$4
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" OMP_NUM_THREADS=1 WANDB_MODE=disabled
for p in 32-true bf16-mixed; do
  stno-train experiment=release trainer.precision=$p "data.root=[$train,$city]" "data.val_root=[$val]" \
    data.num_workers=0 trainer.max_steps=150 trainer.val_check_interval=50 trainer.limit_val_batches=1 \
    model.val_max_queries=65536 +callbacks.cpu_clock._target_=cpu_clock.CPUClock \
    hydra.run.dir="$out/paired_$p" > "$out/paired_$p.log" 2>&1 &
done
wait
