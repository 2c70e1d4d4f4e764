#!/usr/bin/env bash
# ConvNeXt-atto train step and inference at 32x32 (batch 64, 2 threads), TorchSharp (updp bench)
# and PyTorch (Debian python3-torch, same architecture) one after the other on this machine.
# Repeats the pair REPEATS times (default 3) so the spread of the medians shows the machine's noise.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${REPEATS:-3}
for stem in ${STEMS:-4 2}; do
  for i in $(seq "$repeats"); do
    ./updp bench --model convnext_atto --resolution 32 --batch 64 --stem-stride "$stem" --mode train --threads 2 --runs 20
    ./updp bench --model convnext_atto --resolution 32 --batch 64 --stem-stride "$stem" --mode infer --threads 2 --runs 20
    if /usr/bin/python3 -c "import torch" 2>/dev/null; then
      /usr/bin/python3 bench/pytorch_convnext_atto.py --batch 64 --stem-stride "$stem" --threads 2 --runs 20
    else
      echo "(PyTorch reference skipped: apt-get install python3-torch)"
    fi
  done
done
