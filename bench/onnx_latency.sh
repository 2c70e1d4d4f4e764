#!/usr/bin/env bash
# Original vs merged latency in TorchSharp and ONNX Runtime (docs/BENCHMARKS.md, "Merged models"):
# convnext_tiny at 224² with 3, 6 and 9 blocks of its third stage merged (global blocks 6–14), and
# convnext_atto at 32² (one channel, 10 classes, stem stride 4) with 2, 4 and 6 blocks merged.
# Random weights; each merged model is timed in turns with the unpruned one in the same run.
# RUNS (default 10 for tiny, 30 for atto) and THREADS (default 2) override the settings.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
for pruned in 6,7,8 6,7,8,9,10,11 6,7,8,9,10,11,12,13,14; do
  ./updp bench --model convnext_tiny --resolution 224 --batch 1,32 --engine torchsharp,onnxruntime \
    --pruned "$pruned" --threads "$threads" --runs "${RUNS:-10}" --warmup 2
done
for pruned in 9,11 4,9,10,11 2,4,6,9,10,11; do
  ./updp bench --model convnext_atto --resolution 32 --in-chans 1 --num-classes 10 --stem-stride 4 --batch 1,32 \
    --engine torchsharp,onnxruntime --pruned "$pruned" --threads "$threads" --runs "${RUNS:-30}" --warmup 3
done
