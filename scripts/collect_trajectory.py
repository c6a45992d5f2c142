#!/usr/bin/env python3
"""Collect scripts/mpdr_trajectory.sh runs into <out>/trajectories.tsv and print a summary per
variant: mean test AUC / pAUC over ids and seeds per epoch, and of the shipped bundle."""
import glob, json, os, re, sys
from collections import defaultdict

out, base = sys.argv[1], sys.argv[2]
rows = []
def rep(d):
    p = os.path.join(d, "report.json")
    return json.load(open(p)) if os.path.exists(p) else None
for run in sorted(glob.glob(os.path.join(out, "*", "id*-s*"))):
    if not os.path.isdir(run):
        continue
    variant = os.path.basename(os.path.dirname(run))
    m = re.match(r"id(\w+)-s(\d+)$", os.path.basename(run))
    ident, seed = m.group(1), int(m.group(2))
    tj = os.path.join(run, "training.json")
    watched = {e["epoch"]: e for e in json.load(open(tj))["epochs"]} if os.path.exists(tj) else {}
    shipped = json.load(open(tj)).get("shipped") if os.path.exists(tj) else None
    secs = open(os.path.join(run, "train_seconds")).read().strip() if os.path.exists(os.path.join(run, "train_seconds")) else ""
    epochs = {0: rep(os.path.join(base, f"id{ident}-s{seed}.eval"))}
    for e in glob.glob(os.path.join(run, "epochs", "mpdr-*.eval")):
        epochs[int(re.search(r"mpdr-(\d+)\.eval", e).group(1))] = rep(e)
    def row(label, r, w):
        d = (w or {}).get("diagnostics") or {}
        neg = d.get("e_neg_per_ae") or []
        rows.append([variant, ident, seed, label, r and r["mean_auc"], r and r["mean_pauc"], (w or {}).get("criterion"),
                     (w or {}).get("pseudo_anomaly_auc"), (w or {}).get("other_ids_auc"), d.get("probe_auc"),
                     d.get("e_heldout"), sum(neg) / len(neg) if neg else None, d.get("e_other_ids"), secs])
    for e in sorted(epochs):
        row(str(e), epochs[e], watched.get(e))
    if shipped:
        row(f"shipped:{shipped['shipped']}@{shipped['epoch']}", rep(os.path.join(run, "eval")), watched.get(shipped["epoch"]))
hdr = ["variant", "id", "seed", "epoch", "auc", "pauc", "criterion", "pseudo_auc", "other_ids_auc", "probe_auc", "e_heldout", "e_neg", "e_other_ids", "train_s"]
with open(os.path.join(out, "trajectories.tsv"), "w") as f:
    f.write("\t".join(hdr) + "\n")
    for r in rows:
        f.write("\t".join("" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in r) + "\n")
agg = defaultdict(list)
for r in rows:
    key = (r[0], "shipped" if r[3].startswith("shipped") else int(r[3]))
    if r[4] is not None:
        agg[key].append((r[4], r[5], r[6] if r[6] is not None else float("nan")))
for (v, e) in sorted(agg, key=lambda k: (k[0], 10**6 if k[1] == "shipped" else k[1])):
    xs = agg[(v, e)]
    n = len(xs)
    print(f"{v:28s} epoch {str(e):8s} n={n} AUC {sum(x[0] for x in xs)/n:.4f} pAUC {sum(x[1] for x in xs)/n:.4f} crit {sum(x[2] for x in xs)/n:.4f}")
