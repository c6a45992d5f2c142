#!/usr/bin/env python3
"""Compare `mpdr bench vectors` with PyOD's established detectors on exactly the same splits.

Developer tool (not run by CI): `pip install pyod scikit-learn numpy`, then
    python3 benches/pyod_compare.py --npz ../shared/data/adbench --results <out of mpdr bench vectors>
It reads the split indices `mpdr bench vectors` wrote (splits/<dataset>_seed<k>.json), runs
IForest, OCSVM, KNN, LOF, PCA, ECOD, COPOD, HBOS and CBLOF (PyOD defaults, seeded) on the same
train/test rows with the same standardisation, and prints per-dataset AUROC and the average
rank across datasets (rank 1 = best AUROC), like the paper's Table 6, with the mpdr models
from results.json included (tied AUROCs share the average rank). Writes
<results>/pyod_compare.md and the AUROC table as <results>/pyod_compare.json (--reuse takes
PyOD's numbers from it; --exclude drops a column from the table and the ranks).
"""
import argparse
import json
import pathlib

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score


def detectors(seed):
    from pyod.models.cblof import CBLOF
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.ocsvm import OCSVM
    from pyod.models.pca import PCA

    return {
        "IForest": lambda: IForest(random_state=seed),
        "OCSVM": lambda: OCSVM(),
        "KNN": lambda: KNN(),
        "LOF": lambda: LOF(),
        "PCA": lambda: PCA(random_state=seed),
        "ECOD": lambda: ECOD(),
        "COPOD": lambda: COPOD(),
        "HBOS": lambda: HBOS(),
        "CBLOF": lambda: CBLOF(random_state=seed),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True, type=pathlib.Path)
    ap.add_argument("--results", required=True, type=pathlib.Path)
    ap.add_argument("--exclude", action="append", default=[], help="leave this column out of table and ranks")
    ap.add_argument("--reuse", action="store_true", help="take PyOD's AUROCs from <results>/pyod_compare.json")
    args = ap.parse_args()
    mpdr = json.loads((args.results / "results.json").read_text())
    cache = args.results / "pyod_compare.json"
    cached = json.loads(cache.read_text()) if args.reuse else {}
    table = {}  # dataset -> model -> mean AUROC
    for ds in mpdr["datasets"]:
        name = ds["dataset"]
        table[name] = {"mpdr:" + m["model"]: m["auroc_mean"] for m in ds["models"]}
        if name in cached:
            table[name].update({k: v for k, v in cached[name].items() if not k.startswith("mpdr:")})
            continue
        data = np.load(args.npz / f"{name}.npz")
        X, y = data["X"].astype(np.float64), data["y"].astype(int)
        seeds = sorted(args.results.glob(f"splits/{name}_seed*.json"))
        scores = {}
        for k, sp in enumerate(seeds):
            split = json.loads(sp.read_text())
            tr, te = np.array(split["train"]), np.array(split["test"])
            mu, sd = X[tr].mean(0), X[tr].std(0)
            sd[sd < 1e-12] = 1.0
            Xtr, Xte = (X[tr] - mu) / sd, (X[te] - mu) / sd
            for det, make in detectors(k + 1).items():
                try:
                    model = make().fit(Xtr)
                    auc = roc_auc_score(y[te], model.decision_function(Xte))
                except Exception as e:  # a detector that cannot run on this data scores chance
                    print(f"{name} {det}: {e}")
                    auc = 0.5
                scores.setdefault(det, []).append(auc)
        for det, v in scores.items():
            table[name][det] = float(np.mean(v))
    cache.write_text(json.dumps(table, indent=1))
    models = sorted({m for row in table.values() for m in row} - set(args.exclude))
    ranks = {m: [] for m in models}
    for row in table.values():
        # Rank 1 = best AUROC; ties share the average rank.
        r = rankdata([-row.get(m, 0.5) for m in models], method="average")
        for m, rank in zip(models, r):
            ranks[m].append(rank)
    lines = ["| dataset | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row.get(m, float('nan')):.3f}" for m in models) + " |")
    lines.append("| **mean rank** | " + " | ".join(f"**{np.mean(ranks[m]):.2f}**" for m in models) + " |")
    text = "\n".join(lines)
    print(text)
    (args.results / "pyod_compare.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
