#!/usr/bin/env bash
# The `updp prune` recipe study of docs/RESULTS.md ("The prune recipe"): K = 2 and 4 on the demo's
# baseline, one epoch each for the supernet and the fine-tune, search as in the demo.
#
#   bench/prune_recipe.sh          # needs runs/demo/baseline (run ./updp demo --blocks none first)
#
#   old   : supernet lr 1e-3 (K_max 4), fine-tune lr 1e-3, no distillation (the demo until session 3)
#   A     : supernet lr 2e-4 (K_max 4), fine-tune lr 2e-4, no distillation
#   B     : A's supernet, fine-tune lr 2e-4, distilled from the baseline
#   C     : old's supernet, fine-tune lr 1e-3, distilled from the baseline
#   D     : as C at K = 4
# Every run skips finished stages, so re-running continues where it stopped. THREADS (default 1)
# sets libtorch's threads per run; the two chains run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RECIPE_DIR:-runs/recipe}
base=runs/demo/baseline/model.safetensors
mkdir -p "$out"
[[ -f $base ]] || { echo "no $base: run ./updp demo --blocks none first" >&2; exit 1; }
common=(--checkpoint "$base" --data fashion-mnist --finetune-epochs 1 --search-population 12 --search-generations 5
  --search-val-limit 1000 --threads "${THREADS:-1}")
./updp models >/dev/null  # builds the tool once before the two chains start
old_chain() {
  ./updp prune "${common[@]}" --blocks 2 --max-pruned 4 --supernet-epochs 1 --lr 1e-3 --distill none --out "$out/old"
  ./updp prune "${common[@]}" --blocks 2 --supernet "$out/old/supernet/supernet.safetensors" --lr 1e-3 --out "$out/C"
  ./updp prune "${common[@]}" --blocks 4 --supernet "$out/old/supernet/supernet.safetensors" --lr 1e-3 --out "$out/D"
}
new_chain() {
  ./updp prune "${common[@]}" --blocks 2 --max-pruned 4 --supernet-epochs 1 --lr 2e-4 --distill none --out "$out/A"
  ./updp prune "${common[@]}" --blocks 2 --supernet "$out/A/supernet/supernet.safetensors" --lr 2e-4 --out "$out/B"
}
old_chain >"$out.old.log" 2>&1 &
new_chain >"$out.new.log" 2>&1 &
wait
for r in old A B C D; do
  /usr/bin/python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], m["blocks"], "top-1 %.2f %%" % (100*m["top1"]), "baseline %.2f %%" % (100*m["baseline_top1"]))' \
    "$out/$r/metrics.json" "$r"
done
