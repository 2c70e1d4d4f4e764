#!/usr/bin/python3
"""Prints the family tables of docs/RESULTS.md from the run directories of bench/families.sh.

    bench/families_table.py [RESULTS_DIR]   # default runs/families
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/families"
FAMILIES = [("mobilenetv2_100", (4, 8)), ("resnet18", (2, 4)), ("deit_tiny", (3, 6))]


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def pct(x):
    return f"{100 * x:.2f}"


for family, ks in FAMILIES:
    base = load(os.path.join(root, family, "baseline", "metrics.json"))
    if base is None:
        continue
    print(f"### {family}\n")
    print(f"Baseline: {pct(base['top1'])} % test top-1 (val {pct(base['val_top1'])} %), "
          f"{base['params']:,} parameters, {base['macs'] / 1e6:.1f} M MACs.\n")
    print("| K | blocks | updp | direct | drop | params merged | MACs merged | TorchSharp speed-up b1 / b32 | ONNX Runtime speed-up b1 / b32 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in ks:
        prune = load(os.path.join(root, family, f"prune-K{k}", "metrics.json"))
        if prune is None:
            continue
        cells = [pct(prune["top1"])]
        for method in ("direct", "drop"):
            m = load(os.path.join(root, family, f"K{k}-{method}", "metrics.json"))
            cells.append(pct(m["top1"]) if m else "…")
        blocks = ",".join(map(str, prune["blocks"]))
        print(f"| {k} | {blocks} | {' | '.join(cells)} | {prune['params']:,} | {prune['macs'] / 1e6:.1f} M | "
              f"{prune['speedup']:.2f}× / {prune['speedup_b32']:.2f}× | "
              f"{prune['onnx_speedup']:.2f}× / {prune['onnx_speedup_b32']:.2f}× |")
    print()
