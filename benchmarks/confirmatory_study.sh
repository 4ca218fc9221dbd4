#!/usr/bin/env bash
# The confirmatory study of issue 18 (benchmarks/RESULTS.md, "Does pretraining beat random init?"), as pre-registered:
#   bash benchmarks/confirmatory_study.sh [OUT=runs/study] [STORE]
# 1. the connattractor sample as a store (or STORE), and 2,000 surrogate subjects of its ROI space (simulate --like);
# 2. the default small model, default input scale, 297 optimizer steps, seeds 0 1 2: on the real runs, and on the
#    surrogates only (same steps and schedule shape), two runs side by side on one core each; and patch 8 instead
#    of 16 on the real runs (seeds 0 1);
# 3. `brainjepa evaluate` of each arm (3 pretraining seeds as one recipe) against 3 random-init seeds: regulation
#    (linear probe on ROI pooling; tuned attentive probe) and identification (token FC), two-level bootstrap.
set -euo pipefail
out=${1:-runs/study}
store=${2:-$out/store}
export OMP_NUM_THREADS=1
mkdir -p "$out/eval"
[ -d "$store" ] || brainjepa samples prepare connattractor --out "$store"
[ -d "$out/surrogates" ] || brainjepa simulate --like "$store" --subjects 2000 --out "$out/surrogates" --no-progress
rois=$(python -c "from brainjepa.data.store import RunStore; print(RunStore('$store').num_rois)")
common=(data.crop_size=[$rois,160] logging.log_every=50 logging.checkpoint_every=100000)
# real runs: 92 training runs / batch 8 = 11 batches per epoch x 27 epochs = 297 steps, warmup 2 epochs = 22 steps
real=(data.path="$store" optimization.epochs=27 optimization.warmup=2)
# surrogates: 1,900 training runs = 237 batches per epoch; the same 297 steps and 22 warmup steps
surrogate=(data.path="$out/surrogates" optimization.epochs=2 optimization.ipe_scale=0.6266 optimization.warmup=0.0929)
pretrain() {  # NAME SEED [overrides]
  local name=$1 seed=$2; shift 2
  [ -f "$out/$name/model/model.safetensors" ] && return
  rm -rf "${out:?}/$name"
  brainjepa pretrain --config configs/small_cpu.yaml --out "$out/$name" "${common[@]}" meta.seed="$seed" "$@" \
    > "$out/$name.log" 2>&1
}
for seed in 0 1 2; do
  ( pretrain real$seed "$seed" "${real[@]}" ) &
  ( pretrain surrogate$seed "$seed" "${surrogate[@]}" ) &
  wait
done
evaluate() {  # NAME HEAD POOLING MODELS... (skipped when its table exists: the study resumes where it stopped)
  local name=$1 head=$2 pooling=$3; shift 3
  [ -f "$out/eval/$name/evaluate.csv" ] && return
  brainjepa evaluate --model "$@" --out "$out/eval/$name" --store connattractor="$store" --no-progress \
    --tasks connattractor/identification connattractor/regulation --head "$head" --pooling $pooling \
    --random-init-seeds 0 1 2 > "$out/eval/$name.log" 2>&1
}
for arm in real surrogate; do  # two evaluations side by side, one core each
  models=("$out/${arm}0" "$out/${arm}1" "$out/${arm}2")
  ( evaluate "${arm}_linear" linear "roi tokenfc" "${models[@]}" ) &
  ( evaluate "${arm}_attentive" attentive tokens "${models[@]}" ) &
  wait
done
# patch size 8 vs 16 at equal steps (a 16-frame patch at TR 2 s spans a whole heat/rating cycle): two seeds
( pretrain patch8_0 0 "${real[@]}" model.patch_size=8 ) &
( pretrain patch8_1 1 "${real[@]}" model.patch_size=8 ) &
wait
evaluate patch8_linear linear "roi tokenfc" "$out/patch8_0" "$out/patch8_1"
