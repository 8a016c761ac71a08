"""Can the spectra predict FEFF's computed charge yet? (issue 13, item 4)

    python scripts/charge_transfer_learnability.py [--trees 300] [--folds 5]

The ``reduced-v2`` library sites carry ``feff_charge_transfer`` (e): the electrons the absorber's
Norman sphere gained in FEFF's converged SCF (FEFF's sign: a cation that gave electrons comes out
negative), with the core hole's screening in it: computed from the density, but not the study's
Bader charge. The bundled models predict the formal oxidation state. Per element this asks, on
parent structures the training folds do not contain (5 folds by parent), how well a random forest
on the polynomial features predicts that charge (MAE, R^2) against the best constant (the training
folds' median), and how much of the label the formal oxidation state already carries (Pearson r
between the two, and the MAE of a straight line fitted on the training folds from the *true*
oxidation state: a ceiling for "predict the oxidation state, then convert"). Session 13 (962
labels) found it barely above the constant; session 20 (2,301: R^2 0.15-0.51, MAE 0.7-0.9x the
constant's, 1 min) trained the second charge model (``feff_charge_transfer``, README "Data").
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import r2_score

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, parent_groups
from xanes_agent.models.evaluation import group_folds
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, spectra_to_grid

ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    lib = load_bundled_library().where(source=PROJECT_SOURCE)
    feat = make_featurizer("polynomial", DEFAULT_GRID)
    print("| element | spectra (parents) | charge mean +- sd, e | forest MAE | constant MAE | forest R^2 "
          "| r(charge, ox. state) | line from true ox. state, MAE |")
    print("|---|---|---|---|---|---|---|---|")
    for el in ELEMENTS:
        sub = lib.where(element=el)
        q = sub.labels["feff_charge_transfer"]
        ox = sub.labels["oxidation_state"]
        X, e0 = spectra_to_grid(sub.energy, sub.mu, DEFAULT_GRID)
        ok = np.isfinite(q) & np.isfinite(ox) & np.isfinite(e0) & np.isfinite(X).all(axis=1)
        if ok.sum() < 20:
            print(f"| {el} | {int(ok.sum())} | too few | | | | | |")
            continue
        F, y, z, g = feat.transform(X[ok]), q[ok], ox[ok], parent_groups(sub)[ok]
        folds = group_folds(g, a.folds)
        pred, const, line = (np.full(len(y), np.nan) for _ in range(3))
        for f in np.unique(folds):
            te = folds == f
            forest = RandomForestRegressor(a.trees, min_samples_leaf=2, n_jobs=-1, random_state=0)
            pred[te] = forest.fit(F[~te], y[~te]).predict(F[te])
            const[te] = np.median(y[~te])
            slope, icpt = np.polyfit(z[~te], y[~te], 1) if np.ptp(z[~te]) > 0 else (0.0, np.mean(y[~te]))
            line[te] = slope * z[te] + icpt
        r = np.corrcoef(y, z)[0, 1] if np.ptp(z) > 0 else float("nan")
        print(f"| {el} | {len(y)} ({len(set(g))}) | {y.mean():.2f} +- {y.std():.2f} "
              f"| {np.mean(np.abs(pred - y)):.3f} | {np.mean(np.abs(const - y)):.3f} | {r2_score(y, pred):.2f} "
              f"| {r:.2f} | {np.mean(np.abs(line - y)):.3f} |", flush=True)


if __name__ == "__main__":
    main()
