#!/usr/bin/env bash
# The recipe study of issue 11 (benchmarks/RESULTS.md, "Does pretraining help?"), as it was run:
#   bash benchmarks/recipe_study.sh [OUT=runs/study]
# 1. the connattractor sample (real fMRI from PyPI) as a store, and its brain gradients;
# 2. pretraining budgets in single-core CPU minutes (OMP_NUM_THREADS=1; epochs sized at the measured step time of
#    this machine: tiny 0.46 s/step, small 1.17 s/step, 12 steps per epoch): tiny 5 / 15 / 45 min, small 15 min,
#    two runs side by side;
# 3. `brainjepa evaluate` on the three real tasks (5 subject-grouped folds x 3 seeds, subject-level bootstrap) for
#    each budget, and the embedding / probe settings on the 45-minute tiny model, in two stages;
# 4. one table: python benchmarks/recipe_table.py OUT/eval/*
set -euo pipefail
out=${1:-runs/study}
export OMP_NUM_THREADS=1
mkdir -p "$out/eval"
brainjepa samples prepare connattractor --out "$out/store"
brainjepa gradients --data "$out/store" --out "$out/gradients.csv"
common=(data.path="$out/store" data.crop_size=[119,160] data.gradient_csv_path="$out/gradients.csv"
        logging.log_every=50 logging.checkpoint_every=100000)
small=(model.embed_dim=192 model.depth=6 model.num_heads=6 model.pred_embed_dim=96 model.pred_depth=3)
pretrain() {  # NAME EPOCHS [overrides]
  local name=$1 epochs=$2; shift 2
  brainjepa pretrain --config configs/small_cpu.yaml --out "$out/$name" "${common[@]}" \
    optimization.epochs="$epochs" optimization.warmup=$((epochs / 10)) "$@" > "$out/$name.log" 2>&1
}
( pretrain tiny45 440 ) &
( pretrain tiny5 49; pretrain tiny15 147; pretrain small15 58 "${small[@]}" ) &
wait
evaluate() {  # MODEL NAME [evaluate options]
  local model=$1 name=$2; shift 2
  brainjepa evaluate --model "$out/$model" --out "$out/eval/$name" --store connattractor="$out/store" --no-progress \
    --tasks connattractor/identification connattractor/condition connattractor/rating "$@" > "$out/eval/$name.log" 2>&1
}
# stage 1: the reference's mean pooling on every budget and size, then the pooling / head choices on tiny45
for model in tiny5 tiny15 tiny45 small15; do evaluate $model ${model}_base --pooling mean; done
evaluate tiny5 tiny5_roi --pooling roi
evaluate tiny45 tiny45_roi --pooling roi
evaluate tiny45 tiny45_att --head attentive --pooling tokens
evaluate tiny45 tiny45_attroi --head attentive --pooling roi
# stage 2: on top of the best pooling of stage 1 (roi), one setting changed at a time
evaluate tiny45 tiny45_layer2 --pooling roi --layer -2
evaluate tiny45 tiny45_win3 --pooling roi --windows 3
evaluate tiny45 tiny45_szs --pooling roi --normalization sample_zscore
evaluate tiny45 tiny45_rzs --pooling roi --normalization roi_zscore
evaluate tiny45 tiny45_ctx --pooling roi --encoder context
python benchmarks/recipe_table.py "$out"/eval/*/
