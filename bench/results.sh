#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: UPDP against `direct` and `drop` on Fashion-MNIST with convnext_atto.
#
#   bench/results.sh                 # everything (several CPU hours on 2 cores); resumable
#   JOBS=2 THREADS=1 bench/results.sh  # one libtorch thread per run, two fine-tunes at a time: on a
#                                      shared machine, two-thread runs stall each other (OpenMP spin-waits)
#   bench/results_table.py           # prints the tables of docs/RESULTS.md from the run directories
#
# Every step skips its work when its output exists, so re-running continues where it stopped.
# Steps, all from one baseline and one supernet so the methods share everything but the method:
#   1. baseline  : the demo recipe (12 epochs, batch 128, lr 4e-3, flips, stem stride 4)
#   2. supernet  : K_max 10, 3 epochs, lr 1e-3 (the default before the fine-tuning lr became 2e-4)
#   3. search    : K = 2, 6, 10 on the supernet (2000 validation images; exhaustive for 66 subsets,
#                  evolutionary for K=6: population 16, 8 generations, seed 0)
#   4. fine-tune : the best subset of each K with updp, direct and drop, from the supernet:
#                  1 epoch at lr 1e-3 x seeds 0,1,2, then the default recipe (3 epochs, lr 2e-4; seed 0)
#   5. ablations : K=10, 1 epoch at lr 1e-3, seeds 0,1,2: updp from the baseline (--init baseline), and
#                  updp with λ rising over the whole fine-tune (--ramp 1.0)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RESULTS_DIR:-runs/results}
jobs=${JOBS:-1}
threads=${THREADS:-}
threads_arg=()
[[ -n "$threads" ]] && threads_arg=(--threads "$threads")
mkdir -p "$out"
./updp models >/dev/null  # builds the tool once before anything runs in parallel

baseline=$out/baseline/model.safetensors
if [[ ! -f $out/baseline/metrics.json ]]; then
  resume=(); [[ -f $out/baseline/train_state.json ]] && resume=(--resume)
  ./updp train --model convnext_atto --data fashion-mnist --epochs 12 --batch-size 128 --lr 4e-3 \
    --warmup-epochs 1 --crop-padding 0 --stem-stride 4 --seed 0 --out "$out/baseline" "${resume[@]}" "${threads_arg[@]}"
fi

supernet=$out/supernet/supernet.safetensors
if [[ ! -f $out/supernet/metrics.json ]]; then
  resume=(); [[ -f $out/supernet/train_state.json ]] && resume=(--resume)
  ./updp supernet --checkpoint "$baseline" --data fashion-mnist --max-pruned 10 --epochs 3 --lr 1e-3 --seed 0 --out "$out/supernet" "${resume[@]}" "${threads_arg[@]}"
fi

for k in 2 6 10; do
  if [[ ! -f $out/search-K$k/search.json ]]; then
    ./updp search --checkpoint "$supernet" --data fashion-mnist --blocks "$k" --val-limit 2000 --seed 0 --out "$out/search-K$k" "${threads_arg[@]}"
  fi
done

best() { /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["candidates"][0]["blocks"])))' "$1"; }

# One fine-tune per line: run directory, then the arguments of `updp finetune`.
plan=$(mktemp); trap 'rm -f "$plan"' EXIT
for seed in 0 1 2; do
  for k in 2 6 10; do
    s=$(best "$out/search-K$k/search.json")
    for m in updp direct drop; do
      echo "$out/ft1/K$k/$m-s$seed --checkpoint $supernet --pruned $s --method $m --epochs 1 --lr 1e-3 --seed $seed" >>"$plan"
    done
  done
done
for k in 2 6 10; do
  s=$(best "$out/search-K$k/search.json")
  for m in updp direct drop; do
    echo "$out/ft-default/K$k/$m --checkpoint $supernet --pruned $s --method $m --seed 0" >>"$plan"
  done
done
s=$(best "$out/search-K10/search.json")
for seed in 0 1 2; do
  echo "$out/ablation/K10/init-baseline-s$seed --checkpoint $baseline --init baseline --pruned $s --method updp --epochs 1 --lr 1e-3 --seed $seed" >>"$plan"
  echo "$out/ablation/K10/ramp1.0-s$seed --checkpoint $supernet --pruned $s --method updp --ramp 1.0 --epochs 1 --lr 1e-3 --seed $seed" >>"$plan"
done

finetune() {
  local dir=$1; shift
  [[ -f $dir/metrics.json ]] && return 0
  local resume=(); [[ -f $dir/train_state.json ]] && resume=(--resume)
  mkdir -p "$dir"
  echo "== finetune $dir"
  ./updp finetune --data fashion-mnist --out "$dir" "$@" "${resume[@]}" "${threads_arg[@]}" >"$dir.log" 2>&1 \
    || { echo "finetune $dir failed, see $dir.log" >&2; return 1; }
}
export -f finetune
export threads_arg_str="${threads_arg[*]}"
if [[ $jobs -le 1 ]]; then
  while read -r line; do
    # shellcheck disable=SC2086
    finetune $line
  done <"$plan"
else
  # shellcheck disable=SC2016
  xargs -P "$jobs" -L 1 bash -c 'threads_arg=($threads_arg_str); finetune "$@"' _ <"$plan"
fi
echo "done: bench/results_table.py $out"
