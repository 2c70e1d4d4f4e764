#!/usr/bin/python3
"""Prints the tables of docs/RESULTS.md from the run directories bench/results.sh writes.

    bench/results_table.py [RESULTS_DIR]      (default runs/results)

A difference between two methods is called a win only where it exceeds two standard errors of
the difference of the means (SE = sqrt(s1^2/n1 + s2^2/n2), sample standard deviations). Runs that
have not finished are shown as "pending", never left out silently.
"""

import json
import math
import os
import statistics
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/results"
KS = (2, 6, 10)
METHODS = ("updp", "direct", "drop")
SEEDS = (0, 1, 2)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def top1s(dirs):
    values = []
    for d in dirs:
        m = load(os.path.join(root, d, "metrics.json"))
        if m is not None:
            values.append(100 * m["top1"])
    return values


def mean_std(values):
    if not values:
        return "pending"
    if len(values) == 1:
        return f"{values[0]:.2f} (n=1)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def compare(a, b):
    """'win', 'loss' or 'tie' for mean(a) - mean(b) against two standard errors."""
    if len(a) < 2 or len(b) < 2:
        return "n/a"
    diff = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    verdict = "win" if diff > 2 * se else "loss" if diff < -2 * se else "tie"
    return f"{diff:+.2f} ± {2 * se:.2f} ({verdict})"


def main():
    base = load(os.path.join(root, "baseline", "metrics.json"))
    sup = load(os.path.join(root, "supernet", "metrics.json"))
    print("## Baseline and supernet\n")
    print("| run | test top-1 | val top-1 | epochs | params | MACs |")
    print("|---|---:|---:|---:|---:|---:|")
    if base:
        print(f"| baseline convnext_atto | {100 * base['top1']:.2f} | {100 * base['val_top1']:.2f} | {base['epochs']} | {base['params']:,} | {base['macs']:,} |")
    if sup:
        print(f"| supernet (K_max {sup['max_pruned']}, every block original) | – | {100 * sup['val_top1']:.2f} | {sup['epochs']} | | |")
    print()

    print("## Searched subsets\n")
    print("| K | best subset | search val top-1 (supernet) | method | subsets scored | merged params | merged MACs |")
    print("|---:|---|---:|---|---:|---:|---:|")
    for k in KS:
        s = load(os.path.join(root, f"search-K{k}", "search.json"))
        if s is None:
            print(f"| {k} | pending | | | | | |")
            continue
        c = s["candidates"][0]
        print(f"| {k} | {','.join(map(str, c['blocks']))} | {100 * c['val_top1']:.2f} | {s['method']} | {s['scored']} | {c['params']:,} | {c['macs']:,} |")
    print()

    print("## Test top-1 (%) after a 1-epoch fine-tune, seeds 0, 1, 2 (mean ± sample std)\n")
    print("| K | updp | direct | drop | updp − direct | updp − drop |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in KS:
        r = {m: top1s([f"ft1/K{k}/{m}-s{s}" for s in SEEDS]) for m in METHODS}
        print(f"| {k} | {mean_std(r['updp'])} | {mean_std(r['direct'])} | {mean_std(r['drop'])} | "
              f"{compare(r['updp'], r['direct'])} | {compare(r['updp'], r['drop'])} |")
    print()
    print("Differences are mean(updp) − mean(other) ± two standard errors; 'win' only where the difference exceeds them.\n")

    print("## Test top-1 (%) after the default fine-tune (3 epochs, seed 0)\n")
    print("| K | updp | direct | drop |")
    print("|---:|---:|---:|---:|")
    for k in KS:
        cells = [mean_std(top1s([f"ft-default/K{k}/{m}"])) for m in METHODS]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()

    print("## Ablations at K = 10, 1-epoch fine-tune, seeds 0, 1, 2\n")
    print("| variant | test top-1 | difference to the default |")
    print("|---|---:|---:|")
    default = top1s([f"ft1/K10/updp-s{s}" for s in SEEDS])
    print(f"| updp, --init supernet, --ramp 0.5 (default) | {mean_std(default)} | |")
    for name, label in (("init-baseline", "updp, --init baseline"), ("ramp1.0", "updp, --ramp 1.0")):
        v = top1s([f"ablation/K10/{name}-s{s}" for s in SEEDS])
        print(f"| {label} | {mean_std(v)} | {compare(v, default)} |")
    print()

    lat = load(os.path.join(root, "latency.json"))
    if lat:
        print("## TorchSharp latency of the fine-tuned models (ms, median; speed-up over the baseline in the same run)\n")
        print("| model | blocks | params | MACs | ms b1 | ms b32 | speed-up b1 | speed-up b32 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for row in lat["rows"]:
            print(f"| {row['name']} | {row['blocks']} | {row['params']:,} | {row['macs']:,} | {row['ms_b1']:.2f} | {row['ms_b32']:.2f} | "
                  f"{row['speedup_b1']:.2f}× | {row['speedup_b32']:.2f}× |")
        print()


main()
