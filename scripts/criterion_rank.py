#!/usr/bin/env python3
"""Rank correlation of the label-free criteria with test AUC over trajectory runs (issue 12
item 3). Reads one or more trajectories.tsv files (scripts/collect_trajectory.py). Reports, per
criterion column: Spearman rho of (criterion - its epoch-0 value) against (test AUC - epoch-0
AUC) over every (run, epoch > 0) — the question a selector asks: "did MPDR improve on its AE?" —
and the pooled rho of the raw values over all rows (mixes machine ids)."""
import sys
from collections import defaultdict

def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r

def spearman(a, b):
    if len(a) < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")

runs = defaultdict(dict)
for path in sys.argv[1:]:
    lines = open(path).read().splitlines()
    hdr = lines[0].split("\t")
    for line in lines[1:]:
        r = dict(zip(hdr, line.split("\t")))
        if r["epoch"].startswith("shipped") or not r["auc"]:
            continue
        runs[(r["variant"], r["id"], r["seed"])][int(r["epoch"])] = r
for col in ["criterion", "pseudo_auc", "other_ids_auc"]:
    dc, da, pc, pa = [], [], [], []
    for run in runs.values():
        if 0 not in run or not run[0].get(col):
            continue
        c0, a0 = float(run[0][col]), float(run[0]["auc"])
        for e, r in run.items():
            if not r.get(col):
                continue
            pc.append(float(r[col])); pa.append(float(r["auc"]))
            if e > 0:
                dc.append(float(r[col]) - c0); da.append(float(r["auc"]) - a0)
    print(f"{col:14s} delta rho {spearman(dc, da):+.3f} (n={len(dc)})   pooled rho {spearman(pc, pa):+.3f} (n={len(pc)})")
