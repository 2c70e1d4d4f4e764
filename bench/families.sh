#!/usr/bin/env bash
# Reproduces the MobileNetV2, ResNet and DeiT rows of docs/RESULTS.md: for each family a baseline
# trained on a slice of Fashion-MNIST, then `updp prune` (the default recipe: distilled from the
# baseline, lr 2e-4) at two values of K, and `direct` and `drop` fine-tuned on the same subsets from
# the same supernet with the same recipe, so that only the method differs.
#
#   bench/families.sh                  # all three families (about 2 CPU hours on 2 cores); resumable
#   JOBS=2 THREADS=1 bench/families.sh # two families at a time, one libtorch thread each
#   FAMILIES="resnet18" bench/families.sh
#   bench/families_table.py            # prints the tables of docs/RESULTS.md from the run directories
#
# The budget is small on purpose (the whole study must fit a 2-core session): 10,000 training
# images, 2,000 validation images, baseline 8 epochs, supernet 1 epoch, fine-tunes 1 epoch, search
# on 1,000 validation images with 4 calibration batches (evolution: population 8, 4 generations).
# Cheaper stems than the small-input defaults: mobilenetv2_100 stem stride 2 (maps 16..1 px),
# resnet18 stem stride 2 (3×3 conv, 16×16 maps in layer1), deit_tiny patch 8 (16 tokens + class).
# Candidates are the blocks `drop` can remove (blocks keeping their input's shape), so all three
# methods prune the same subset:
#   mobilenetv2_100  2,4,5,7,8,9,11,12,14,15  K = 4, 8
#   resnet18         0,1,3,5,7                K = 2, 4
#   deit_tiny        every block (0..11)      K = 3, 6
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RESULTS_DIR:-runs/families}
jobs=${JOBS:-1}
threads=${THREADS:-}
families=${FAMILIES:-"resnet18 mobilenetv2_100 deit_tiny"}
mkdir -p "$out"
./updp models >/dev/null  # builds the tool once before anything runs in parallel

family() {
  local name=$1 model stem candidates ks lr
  case $name in
    mobilenetv2_100) model=mobilenetv2_100 stem=2 candidates=2,4,5,7,8,9,11,12,14,15 ks="8 4" lr=2e-3 ;;
    resnet18) model=resnet18 stem=2 candidates=0,1,3,5,7 ks="4 2" lr=2e-3 ;;
    deit_tiny) model=deit_tiny_patch16_224 stem=8 candidates=0,1,2,3,4,5,6,7,8,9,10,11 ks="6 3" lr=1e-3 ;;
    *) echo "unknown family $name" >&2; return 2 ;;
  esac
  local dir=$out/$name thr=()
  [[ -n ${THREADS:-} ]] && thr=(--threads "$THREADS")
  local common=(--data fashion-mnist --train-limit 10000 --seed 0 "${thr[@]}")
  mkdir -p "$dir"
  local base=$dir/baseline/model.safetensors
  if [[ ! -f $dir/baseline/metrics.json ]]; then
    local resume=(); [[ -f $dir/baseline/train_state.json ]] && resume=(--resume)
    echo "== $name baseline"
    ./updp train --model "$model" --stem-stride "$stem" --epochs 8 --lr "$lr" --val-size 2000 \
      --out "$dir/baseline" "${common[@]}" "${resume[@]}" >"$dir/baseline.log" 2>&1
  fi
  local kmax=${ks%% *} supernet=$dir/prune-K${ks%% *}/supernet/supernet.safetensors k
  for k in $ks; do
    local reuse=()
    [[ $k != "$kmax" ]] && reuse=(--supernet "$supernet")
    if [[ ! -f $dir/prune-K$k/metrics.json ]]; then
      echo "== $name prune K=$k"
      ./updp prune --checkpoint "$base" --blocks "$k" --max-pruned "$kmax" --candidates "$candidates" \
        --supernet-epochs 1 --finetune-epochs 1 --search-val-limit 1000 --calibration-batches 4 \
        --search-population 8 --search-generations 4 --out "$dir/prune-K$k" "${reuse[@]}" "${common[@]}" \
        >"$dir/prune-K$k.log" 2>&1
    fi
    local subset m
    subset=$(/usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["candidates"][0]["blocks"])))' "$dir/prune-K$k/search.json")
    for m in direct drop; do
      local ft=$dir/K$k-$m
      [[ -f $ft/metrics.json ]] && continue
      local resume=(); [[ -f $ft/train_state.json ]] && resume=(--resume)
      echo "== $name K=$k $m"
      ./updp finetune --checkpoint "$supernet" --pruned "$subset" --method "$m" --epochs 1 \
        --calibration-batches 4 --distill "$base" --out "$ft" "${common[@]}" "${resume[@]}" >"$ft.log" 2>&1
    done
  done
  echo "== $name done"
}
export -f family
export out

if [[ $jobs -le 1 ]]; then
  for f in $families; do family "$f"; done
else
  # shellcheck disable=SC2086
  printf '%s\n' $families | xargs -P "$jobs" -I{} bash -c 'family {}'
fi
echo "done: bench/families_table.py $out"
