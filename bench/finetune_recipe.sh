#!/usr/bin/env bash
# The fine-tuning recipe of docs/RESULTS.md ("Fine-tuning from ImageNet weights", issue 11): which
# learning rate and warm-up to use when `updp train --pretrained` starts from ImageNet weights, and
# what pretrained weights are worth against training from scratch. Run alone on the machine.
#   bench/finetune_recipe.sh [OUT]        (default /tmp/updp-finetune-recipe)
#   ONLY="fm2k-scratch shapes-scratch" bench/finetune_recipe.sh   # only these runs (e.g. two
#                                         # instances on disjoint runs, one core each, once the data exist)
#
# The only ImageNet-trained network this machine can reach is ML.NET's ResNet-18 featurizer (NuGet
# Microsoft.ML.DnnImageFeaturizer.ResNet18, MIT): building bench/MlnetResNetCheck restores it,
# tools/mlnet_resnet18_to_torchvision.py writes it as a torchvision resnet18 state dict, and
# MlnetResNetCheck checks the conversion against the featurizer in ONNX Runtime.
# Data (both made by scripts, standard library only):
#   shapes: tools/make_shapes_folder.py, 4 classes, 150 train / 40 test images per class, RGB PNGs
#           of 48–160 px; from scratch nothing learns them in 3–20 epochs (docs/RESULTS.md).
#   fm2k:   the first 2,000 Fashion-MNIST train and test images as gray PNGs (tools/idx_to_image_folder.py),
#           read as RGB.
# Every run: resnet18 at 224², 3 epochs, batch 32, seed 0, one thread (the accuracies do not depend
# on what else runs), the default augmentation (RandomResizedCrop 0.08–1, flips), 10 % of train
# carved for validation; lr and warm-up vary. fm2k trains on its first 1,000 images (900 + 100 val).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
out=${1:-/tmp/updp-finetune-recipe}
mkdir -p "$out"
cd "$root"

dotnet build bench/MlnetResNetCheck -c Release --nologo -v quiet >/dev/null
check=bench/MlnetResNetCheck/bin/Release/net10.0/linux-x64
package=$(cat "$check/package_dir.txt")
[ -f "$out/resnet18_in1k.safetensors" ] || python3 tools/mlnet_resnet18_to_torchvision.py "$package" "$out/resnet18_in1k.safetensors"
[ -f "$out/resnet18_in1k_full.safetensors" ] || python3 tools/mlnet_resnet18_to_torchvision.py "$package" "$out/resnet18_in1k_full.safetensors" --drop-block none
# The conversion itself (all three last-stage blocks), then the resnet18 that is used (two of them).
dotnet "$check/MlnetResNetCheck.dll" "$package" "$out/resnet18_in1k_full.safetensors" 3 | tee "$out/check.txt"
dotnet "$check/MlnetResNetCheck.dll" "$package" "$out/resnet18_in1k.safetensors" 2 | tee -a "$out/check.txt"

[ -d "$out/shapes" ] || python3 tools/make_shapes_folder.py "$out/shapes"
[ -d "$out/fm2k" ] || python3 tools/idx_to_image_folder.py /usr/share/datasets/fashion-mnist "$out/fm2k" --limit 2000

run() {  # NAME DATA ARGS...
  local name=$1 data=$2
  shift 2
  [ -f "$out/$name/metrics.json" ] && return
  [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]] && return
  rm -rf "$out/$name"
  ./updp train --model resnet18 --data "$out/$data" --input-size 224 --epochs 3 --batch-size 32 --seed 0 \
    --threads 1 --cache "$out/cache-$data" --out "$out/$name" "$@" 2>&1 | grep -v " step [0-9]*/" | tee "$out/$name.log"
}
# Most telling first (the script can be stopped and rerun; finished runs are kept): the from-scratch
# lr against the fine-tuning one on both data sets, then warm-up, then the baselines.
pre=(--pretrained "$out/resnet18_in1k.safetensors")
run shapes-pre-lr5e-4-wu1 shapes "${pre[@]}" --lr 5e-4 --warmup-epochs 1
run shapes-pre-lr2e-3-wu1 shapes "${pre[@]}" --lr 2e-3 --warmup-epochs 1
run fm2k-pre-lr5e-4-wu1 fm2k --train-limit 1000 "${pre[@]}" --lr 5e-4 --warmup-epochs 1
run fm2k-pre-lr2e-3-wu1 fm2k --train-limit 1000 "${pre[@]}" --lr 2e-3 --warmup-epochs 1
run shapes-pre-lr5e-4-wu0 shapes "${pre[@]}" --lr 5e-4 --warmup-epochs 0
run fm2k-scratch fm2k --train-limit 1000
run shapes-scratch shapes
run shapes-pre-lr1e-4-wu1 shapes "${pre[@]}" --lr 1e-4 --warmup-epochs 1
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
print("| run | val top-1 per epoch | test top-1 |")
print("|---|---|---:|")
for name in sorted(os.listdir(out)):
    path = os.path.join(out, name, "metrics.json")
    if os.path.isfile(path):
        m = json.load(open(path))
        vals = " / ".join(f"{100 * h['val_top1']:.1f}" for h in m.get("history", []))
        print(f"| {name} | {vals} | {100 * m['top1']:.2f} % |")
EOF
