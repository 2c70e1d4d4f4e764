#!/usr/bin/python3
"""TorchSharp latency of the fine-tuned models of bench/results.sh, written to RESULTS_DIR/latency.json.

    bench/results_latency.py [RESULTS_DIR]   # default runs/results; run it on quiet cores

For each K of the default fine-tunes: the `updp` model merged (`updp merge`; `direct` has the same
merged structure, so the same latency) and the `drop` model (its blocks are gone, nothing to merge),
each timed by `updp bench --checkpoint` against an unpruned model of the same configuration in the
same run (models in turns, batch 1 and 32, 2 threads). bench/results_table.py prints the table.
"""
import json
import os
import subprocess
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/results"
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
runs = os.environ.get("RUNS", "30")


def bench(checkpoint):
    out = subprocess.run(["./updp", "bench", "--checkpoint", checkpoint, "--batch", "1,32", "--runs", runs,
                          "--threads", "2", "--json"], check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    timed = {r["batch"]: r for r in rows if r["speedup"] is not None}
    return timed[1], timed[32]


rows = []
for k in (2, 6, 10):
    for method in ("updp", "drop"):
        run = os.path.join(root, "ft-default", f"K{k}", method)
        metrics = json.load(open(os.path.join(run, "metrics.json")))
        checkpoint = os.path.join(run, "pruned.safetensors")
        if method == "updp":
            merged = os.path.join(run, "merged.safetensors")
            if not os.path.exists(merged):
                subprocess.run(["./updp", "merge", "--checkpoint", checkpoint, "--out", merged], check=True)
            checkpoint = merged
        b1, b32 = bench(checkpoint)
        rows.append({
            "name": f"K={k} {'updp / direct (merged)' if method == 'updp' else 'drop'}",
            "blocks": ",".join(map(str, metrics["blocks"])),
            "params": metrics["params"],
            "macs": b1["macs"],
            "ms_b1": b1["median_ms"],
            "ms_b32": b32["median_ms"],
            "speedup_b1": b1["speedup"],
            "speedup_b32": b32["speedup"],
        })
        print(rows[-1], flush=True)

tmp = os.path.join(root, "latency.json.tmp")
with open(tmp, "w") as f:
    json.dump({"threads": 2, "runs": int(runs), "rows": rows}, f, indent=2)
os.replace(tmp, os.path.join(root, "latency.json"))
print("wrote", os.path.join(root, "latency.json"))
