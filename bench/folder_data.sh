#!/usr/bin/env bash
# The image-folder numbers of docs/BENCHMARKS.md and docs/RESULTS.md (issue 11). Run alone on the
# machine: libtorch and the decoders share its two cores. Writes logs and runs under $OUT.
#   bench/folder_data.sh [OUT]        (default /tmp/updp-folder-data)
# Needs: bench/decoders.sh's 1,000 JPEGs in /tmp/updp-decoders (made if missing) and Debian's
# dataset-fashion-mnist (tools/idx_to_image_folder.py writes it out as PNG folders).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
out=${1:-/tmp/updp-folder-data}
mkdir -p "$out"
cd "$root"

photos=/tmp/updp-decoders
if [ ! -f "$photos/img_00999.jpg" ]; then
  dotnet run -c Release --project bench/decoders -- make "$photos" 1000
fi
# A file list over the JPEGs (four arbitrary classes): the loader's speed does not depend on labels.
python3 - "$photos" <<'PY'
import os, sys
d = sys.argv[1]
files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))
with open(os.path.join(d, "list.csv"), "w") as f:
    f.write("path,label\n")
    for i, name in enumerate(files):
        f.write(f"{name},{'abcd'[i % 4]}\n")
PY
[ -d "$out/fm-png" ] || python3 tools/idx_to_image_folder.py "$out/fm-png"
[ -d "$out/fm-png2k" ] || python3 tools/idx_to_image_folder.py "$out/fm-png2k" --limit 2000

# 1. The training loader alone at 224² (random resized crop, flip, normalise), batch 32: from the
#    JPEG files and from the decoded cache (built first), 30 batches after 3 warm-up ones.
rm -rf "$out/cache-photos"
./updp bench --mode data --data "$photos/list.csv" --resolution 224 --batch 32 --runs 30 --warmup 3 \
  --cache "$out/cache-photos" --json | tee "$out/loader.json"

# 2. The training step alone: convnext_atto, 224², 3 channels, batch 32.
./updp bench --model convnext_atto --resolution 224 --batch 32 --in-chans 3 --num-classes 10 --mode train \
  --runs 10 --warmup 2 --json | tee "$out/train_step.json"

# 3. One epoch at 224² on 2,000 Fashion-MNIST images upscaled (1 channel → RGB), with the cache:
#    step and data times in metrics.json's history.
rm -rf "$out/atto224"
./updp train --model convnext_atto --data "$out/fm-png2k" --input-size 224 --epochs 1 --batch-size 32 \
  --cache "$out/cache-fm2k" --out "$out/atto224" 2>&1 | grep -v " step [0-9]*/" | tee "$out/atto224.log"

# 4. The demo's baseline recipe through the folder loader (Fashion-MNIST written out as PNGs,
#    MNIST-style pad transform and the data's statistics, as the idx loader does).
rm -rf "$out/fm-folder"
./updp train --model convnext_atto --data "$out/fm-png" --transform pad --in-chans 1 --input-size 32 \
  --mean 0.2860 --std 0.3530 --crop-padding 0 --epochs 12 --batch-size 128 --lr 0.004 --warmup-epochs 1 \
  --val-size 5000 --cache "$out/cache-fm" --out "$out/fm-folder" 2>&1 | grep -v " step [0-9]*/" | tee "$out/fm-folder.log"
