#!/usr/bin/env python3
"""Paired class-accuracy difference of every row of an `evaluate` results.json against its FP32 row.

Each generated image is classified by the judge; rows share noise and labels, so the per-image difference
(correct in the row − correct in FP) is paired. Prints the mean difference in points with a normal 95 % CI.
Usage: python3 eng/paired-accuracy.py artifacts/w4a4/w4a4-g64/results.json
"""
import json
import math
import sys

results = json.load(open(sys.argv[1]))
rows = {row["setting"]: row for row in results["rows"]}
fp = next(name for name in rows if name.startswith("FP32"))
reference = rows[fp]["per_image"]["correct"]
for name, row in rows.items():
    if name == fp:
        continue
    diff = [int(a) - int(b) for a, b in zip(row["per_image"]["correct"], reference)]
    n = len(diff)
    mean = sum(diff) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    print(f"| {name} | {n} | {100 * mean:+.1f} [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}] |")
