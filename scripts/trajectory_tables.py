#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md from trajectories.tsv files (scripts/collect_trajectory.py):
per variant, one row per (id, seed): the AE (epoch 0), the last MPDR epoch, the shipped bundle
and what the `guard` / `best` rules would ship (from the recorded criterion), train seconds;
then the mean trajectory (AUC / pAUC per epoch over all runs of the variant).
    scripts/trajectory_tables.py <trajectories.tsv>... [--variants=a,b] [--n=3920] [--margin-se=1]
--n: held-out (and pseudo-anomaly) vectors behind the criterion, for the margin of the rules:
an MPDR epoch must beat epoch 0 by margin_se Hanley-McNeil standard errors (as mpdr train)."""
import sys
from collections import defaultdict

args = [a for a in sys.argv[1:] if not a.startswith("--")]
want, n_vec, margin_se = None, 3920, 1.0
for a in sys.argv[1:]:
    if a.startswith("--variants="):
        want = a.split("=", 1)[1].split(",")
    if a.startswith("--n="):
        n_vec = int(a.split("=", 1)[1])
    if a.startswith("--margin-se="):
        margin_se = float(a.split("=", 1)[1])

def se(a, n1, n2):
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return max((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2), 0) ** 0.5
runs = defaultdict(dict)
shipped = {}
secs = {}
for path in args:
    lines = open(path).read().splitlines()
    hdr = lines[0].split("\t")
    for line in lines[1:]:
        r = dict(zip(hdr, line.split("\t")))
        key = (r["variant"], r["id"], int(r["seed"]))
        if want and r["variant"] not in want:
            continue
        secs[key] = r["train_s"]
        if r["epoch"].startswith("shipped"):
            shipped[key] = (r["epoch"].split(":")[1], float(r["auc"]), float(r["pauc"]))
        elif r["auc"]:
            runs[key][int(r["epoch"])] = r
f = lambda v: f"{float(v):.3f}"
by_variant = defaultdict(list)
for key in sorted(runs):
    if max(runs[key]) > 0:  # runs that failed or were stopped have no MPDR epoch
        by_variant[key[0]].append(key)
for v, keys in by_variant.items():
    print(f"\n**{v}**\n")
    print("| id | seed | AE (epoch 0) AUC / pAUC | last epoch AUC / pAUC | shipped (rule of the run) | `guard` ships (margin) | `best` ships (margin) | MPDR train s |")
    print("|---|---|---|---|---|---|---|---|")
    tot = defaultdict(list)
    for key in keys:
        ep = runs[key]
        last = max(ep)
        crit = {e: float(r["criterion"]) for e, r in ep.items() if r.get("criterion")}
        need = crit.get(0, 0) + margin_se * se(crit.get(0, 0.5), n_vec, n_vec)
        g = last if crit.get(last, -1) > need else 0
        mp = [e for e in crit if e > 0]
        b = max(mp, key=lambda e: (crit[e], -e)) if mp else 0
        b = b if crit.get(b, -1) > need else 0
        sh = shipped.get(key)
        cell = lambda e: f"{f(ep[e]['auc'])} / {f(ep[e]['pauc'])} (ep {e})"
        shc = f"{sh[1]:.3f} / {sh[2]:.3f} ({sh[0]})" if sh else "—"
        print(f"| {key[1]} | {key[2]} | {f(ep[0]['auc'])} / {f(ep[0]['pauc'])} | {f(ep[last]['auc'])} / {f(ep[last]['pauc'])} | {shc} | {cell(g)} | {cell(b)} | {secs.get(key, '')} |")
        for name, e in [("ae", 0), ("last", last), ("guard", g), ("best", b)]:
            tot[name].append((float(ep[e]["auc"]), float(ep[e]["pauc"])))
        if sh:
            tot["shipped"].append((sh[1], sh[2]))
    mean = lambda xs: (sum(x[0] for x in xs) / len(xs), sum(x[1] for x in xs) / len(xs))
    parts = [f"{n} {mean(xs)[0]:.4f} / {mean(xs)[1]:.4f}" for n, xs in tot.items() if xs]
    print(f"\nMean over {len(keys)} runs (AUC / pAUC): " + "; ".join(parts) + ".")
    traj = defaultdict(list)
    for key in keys:
        for e, r in runs[key].items():
            traj[e].append((float(r["auc"]), float(r["pauc"]), float(r["criterion"]) if r.get("criterion") else None, float(r["probe_auc"]) if r.get("probe_auc") else None))
    print("\n| epoch | " + " | ".join(str(e) for e in sorted(traj)) + " |")
    print("|---|" + "---|" * len(traj))
    for i, name in [(0, "mean AUC"), (1, "mean pAUC"), (2, "mean criterion"), (3, "texture probe AUC")]:
        cells = []
        for e in sorted(traj):
            xs = [t[i] for t in traj[e] if t[i] is not None]
            cells.append(f"{sum(xs)/len(xs):.4f}" if xs else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
