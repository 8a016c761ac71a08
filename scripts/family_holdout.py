"""How well the project's FEFF10 spectra teach models about structure *types* they have not seen.

The library's fixed held-out split is by material, and a project material is one strained and
distorted copy of a structure family: its siblings of the same family are in training, so held-out
scores there measure interpolation within families (near-perfect). This script leaves each
structure family out in turn (per element: train on the other families, predict the left-out one)
and pools the predictions:

    python scripts/family_holdout.py [--library LIB.npz] [--featurization polynomial] [--out out/family_holdout.md]

Per fold, the project's own seed ensembles (`SeedEnsembleClassifier` with random over-sampling
for CN, `SeedEnsembleRegressor`; one seed by default, the study's 100 trees and max_features).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

from xanes_agent.data.edges import ELEMENTS
from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library
from xanes_agent.data.readers import read_library
from xanes_agent.models.ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor
from xanes_agent.models.features import make_featurizer, spectra_to_grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=None)
    ap.add_argument("--featurization", default="polynomial", choices=("polynomial", "pointwise"))
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default="out/family_holdout.md")
    a = ap.parse_args()
    lib = (read_library(a.library) if a.library else load_bundled_library()).where(source=PROJECT_SOURCE)
    feat = make_featurizer(a.featurization)
    rows = ["| element | families | n | CN accuracy | CN modal baseline | distance R^2 | distance MAE (Å) "
            "| oxidation-state R^2 |", "|---|---|---|---|---|---|---|---|"]
    for el in ELEMENTS:
        sub = lib.where(element=el)
        if not len(sub):
            continue
        X, e0 = spectra_to_grid(sub.energy, sub.mu)
        F = feat.transform(X)
        fam = np.array([json.loads(p)["family"] for p in sub.provenance])
        cn, d, ox = (sub.labels[k] for k in ("coordination_number", "mean_nn_distance", "oxidation_state"))
        ok = np.isfinite(e0) & np.isin(cn, (4, 5, 6))
        pred = {k: np.full(len(sub), np.nan) for k in ("cn", "d", "ox")}
        for f in np.unique(fam[ok]):
            test, train = ok & (fam == f), ok & (fam != f)
            clf = SeedEnsembleClassifier(a.seeds, a.trees, n_jobs=-1)
            pred["cn"][test] = clf.fit(F[train], cn[train]).predict(F[test])
            for key, y in (("d", d), ("ox", ox)):
                reg = SeedEnsembleRegressor(a.seeds, a.trees, n_jobs=-1)
                pred[key][test] = reg.fit(F[train], y[train]).predict(F[test])
        modal = np.unique(cn[ok], return_counts=True)[1].max() / ok.sum()
        row = (f"| {el} | {len(np.unique(fam[ok]))} | {ok.sum()} | {np.mean(pred['cn'][ok] == cn[ok]):.2f} "
               f"| {modal:.2f} | {r2_score(d[ok], pred['d'][ok]):.2f} | {np.mean(np.abs(d[ok] - pred['d'][ok])):.3f} "
               f"| {r2_score(ox[ok], pred['ox'][ok]):.2f} |")
        rows.append(row)
        print(row, flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"Leave-one-family-out, {a.featurization} features, {PROJECT_SOURCE}\n\n" + "\n".join(rows) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
