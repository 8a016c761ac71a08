"""Which per-spectrum score sees the large errors? Candidates for the domain flag, compared.

    python scripts/domain_scores.py [--elements Cu Fe Ti] [--trees 100] [--no-local-error]

For each element (project FEFF10 spectra, polynomial features, scikit-learn forests of the study's
settings), these scores per held-out spectrum:

* ``knn``: the project's domain score (:class:`~xanes_agent.models.calibration.DomainModel`: mean
  distance to the 5 nearest training spectra over the typical in-family one);
* ``tree spread``: standard deviation of the distance forest's trees' predictions (A);
* ``seed spread``: the same estimated as the agent could: its fast path returns only each seed's
  mean (10 seeds), so the trees are taken in 10 groups and the standard deviation of the group
  means is scaled by sqrt(trees per group) (a noisier estimate of the same spread, 9 degrees of
  freedom);
* ``CN ambiguity``: 1 - the CN forest's largest class probability;
* ``two views``: |distance from polynomial features - distance from pointwise features| (A);
* ``forest vs neighbours``: |the forest's distance - the distance-weighted mean of the 5 nearest
  training spectra's (normalized values, Euclidean)| (A): two kinds of model, one answer?
* ``neighbour spread``: standard deviation of those 5 neighbours' distances (A);
* ``PCA residual``: the squared norm of what the training spectra's principal components (those
  explaining 99.9 % of their variance, on the normalized grid) leave of the spectrum: a shape the
  training spectra do not span (the chemometric Q statistic, SIMCA's DModX);
* ``PCA T2``: Hotelling's T^2 of the spectrum's scores on those components (far along shapes the
  training spectra do span);
* ``forest proximity``: 1 - the mean proximity of the 5 training spectra closest in the distance
  forest's own metric (proximity: the share of trees in which two spectra reach the same leaf;
  Breiman 2001): near only in the features the forest splits on;
* ``local error``: the mean out-of-parent distance error (A) of the 15 nearest training spectra
  (standardized features), each training spectrum's error from a forest trained without its
  parent structure (5 inner folds): does the spectrum lie where new structures go wrong?
  (``--no-local-error`` leaves it out: it costs 5 inner forests per fold, most of the run.)

and their combinations (mean of each score's percentile among in-family held-out spectra). Each is
thresholded at the 90th percentile of its in-family values (in-family: a random fifth of the
spectra held out, siblings in training, which is the allowance the flag has: <= 10 % flagged), and
the table gives, on spectra of parent structures held out (5 folds) and, for Cu, on OmniXAS FEFF 9
spectra of parents the project never computed, the share flagged and the share of spectra with a
distance error above 3x the in-family MAE that are flagged (the target: >= 80 %).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.neighbors import NearestNeighbors

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, parent_groups
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE
from xanes_agent.models.calibration import DomainModel
from xanes_agent.models.evaluation import group_folds
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, spectra_to_grid

SINGLE = ("knn", "tree spread", "seed spread", "CN ambiguity", "two views", "forest vs neighbours",
          "neighbour spread", "PCA residual", "PCA T2", "forest proximity", "local error")
COMBINED = {"knn + tree spread": ("knn", "tree spread"), "knn + seed spread": ("knn", "seed spread"),
            "knn + CN ambiguity": ("knn", "CN ambiguity"),
            "knn + tree spread + CN ambiguity": ("knn", "tree spread", "CN ambiguity"),
            "knn + forest vs neighbours": ("knn", "forest vs neighbours"),
            "tree spread + forest vs neighbours": ("tree spread", "forest vs neighbours"),
            "knn + PCA residual": ("knn", "PCA residual"),
            "tree spread + PCA residual": ("tree spread", "PCA residual"),
            "PCA residual + PCA T2": ("PCA residual", "PCA T2"),
            "knn + forest proximity": ("knn", "forest proximity"),
            "tree spread + forest proximity": ("tree spread", "forest proximity")}
#: Either score beyond its own threshold (both at the one in-family quantile that flags 10 %).
EITHER = {"knn or tree spread": ("knn", "tree spread"), "knn or seed spread": ("knn", "seed spread")}
SEEDS = 10  # the agent's models: 10 seeds, whose means are all its fast path returns


def prepare(coll):
    X, e0 = spectra_to_grid(coll.energy, coll.mu, DEFAULT_GRID)
    d, cn = coll.labels["mean_nn_distance"], coll.labels["coordination_number"]
    ok = np.isfinite(e0) & np.isfinite(X).all(axis=1) & np.isfinite(d) & np.isin(cn, (4, 5, 6))
    return X[ok], d[ok], cn[ok], parent_groups(coll)[ok]


def _forest(trees: int) -> RandomForestRegressor:
    return RandomForestRegressor(trees, max_features=1 / 3, n_jobs=-1, random_state=0)


def local_error(F_train, d_train, g_train, F_test, domain: DomainModel, trees: int, k: int = 15) -> np.ndarray:
    """Mean out-of-parent |error| (A) of each test spectrum's ``k`` nearest training spectra."""
    err = np.zeros(len(F_train))
    inner = group_folds(g_train, 5)
    for f in np.unique(inner):
        m = inner == f
        err[m] = np.abs(_forest(trees).fit(F_train[~m], d_train[~m]).predict(F_train[m]) - d_train[m])
    Z = np.nan_to_num((F_test - domain.center) / domain.scale)
    R = np.nan_to_num((F_train - domain.center) / domain.scale)
    d2 = (Z ** 2).sum(axis=1)[:, None] + (R ** 2).sum(axis=1)[None, :] - 2.0 * Z @ R.T
    return err[np.argsort(d2, axis=1)[:, :k]].mean(axis=1)


def pca_scores(X_train: np.ndarray, X_test: np.ndarray, explained: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """Q (squared residual) and Hotelling T^2 of ``X_test`` against the principal components of
    ``X_train`` that explain ``explained`` of its variance."""
    mean = X_train.mean(axis=0)
    _, sv, vt = np.linalg.svd(X_train - mean, full_matrices=False)
    var = sv ** 2 / (len(X_train) - 1)
    n = int(np.searchsorted(np.cumsum(var) / var.sum(), explained) + 1)
    Z = (X_test - mean) @ vt[:n].T
    resid = (X_test - mean) - Z @ vt[:n]
    return (resid ** 2).sum(axis=1), (Z ** 2 / var[:n]).sum(axis=1)


def proximity_score(forest: RandomForestRegressor, F_train: np.ndarray, F_test: np.ndarray, k: int = 5
                    ) -> np.ndarray:
    """1 - mean proximity of each test row's ``k`` closest training rows (share of trees, same leaf)."""
    leaf_train, leaf_test = forest.apply(F_train), forest.apply(F_test)
    prox = np.zeros((len(F_test), len(F_train)))
    for t in range(leaf_train.shape[1]):
        prox += leaf_test[:, t, None] == leaf_train[None, :, t]
    prox /= leaf_train.shape[1]
    return 1.0 - np.sort(prox, axis=1)[:, -k:].mean(axis=1)


def scores(X_train, d_train, cn_train, g_train, X_test, trees: int, local: bool = True
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The polynomial-feature distance prediction for ``X_test`` and each candidate score."""
    poly, point = make_featurizer("polynomial", DEFAULT_GRID), make_featurizer("pointwise", DEFAULT_GRID)
    F_train, F_test = poly.transform(X_train), poly.transform(X_test)
    forest = _forest(trees).fit(F_train, d_train)
    per_tree = np.stack([t.predict(F_test) for t in forest.estimators_])
    pointwise = _forest(trees).fit(point.transform(X_train), d_train).predict(point.transform(X_test))
    proba = RandomForestClassifier(trees, n_jobs=-1, random_state=0).fit(F_train, cn_train).predict_proba(F_test)
    domain = DomainModel.fit(F_train)
    domain.typical = float(np.median(domain.in_family_distance()))
    pred = per_tree.mean(axis=0)
    near = NearestNeighbors(n_neighbors=5).fit(X_train)
    dist, idx = near.kneighbors(X_test)
    w = 1.0 / np.maximum(dist, 1e-12)
    neighbours = (w * d_train[idx]).sum(axis=1) / w.sum(axis=1)
    # the spread the agent can see: the trees in SEEDS groups (each a seed's forest: the trees of
    # one forest and of another seed are alike independent draws given the data), the standard
    # deviation of the group means times sqrt(trees per group) estimates the trees' spread
    groups = per_tree[: len(per_tree) // SEEDS * SEEDS].reshape(SEEDS, -1, per_tree.shape[1])
    seed = groups.mean(axis=1).std(axis=0, ddof=1) * np.sqrt(groups.shape[1])
    q, t2 = pca_scores(X_train, X_test)
    return pred, {"knn": domain.score(F_test), "tree spread": per_tree.std(axis=0), "seed spread": seed,
                  "CN ambiguity": 1.0 - proba.max(axis=1), "two views": np.abs(pred - pointwise),
                  "forest vs neighbours": np.abs(pred - neighbours), "neighbour spread": d_train[idx].std(axis=1),
                  "PCA residual": q, "PCA T2": t2, "forest proximity": proximity_score(forest, F_train, F_test),
                  "local error": (local_error(F_train, d_train, g_train, F_test, domain, trees) if local
                                  else np.full(len(F_test), np.nan))}


def percentile(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(reference), values, side="right") / len(reference)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", nargs="+", default=["Cu", "Fe", "Ti"])
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--no-local-error", dest="local", action="store_false",
                    help="skip the local-error score (5 inner forests per fold)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    lib = load_bundled_library()
    rng = np.random.default_rng(0)
    print("| element, held out | n | errors > 3x in-family MAE | "
          + " | ".join(f"{k}: flagged / large errors flagged" for k in (*SINGLE, *COMBINED, *EITHER)) + " |")
    print("|---" * (3 + len(SINGLE) + len(COMBINED) + len(EITHER)) + "|")
    for el in a.elements:
        X, d, cn, groups = prepare(lib.where(source=PROJECT_SOURCE, element=el))
        held = rng.random(len(X)) < 0.2  # in-family: siblings stay in training
        pred, ref = scores(X[~held], d[~held], cn[~held], groups[~held], X[held], a.trees, a.local)
        mae = float(np.mean(np.abs(pred - d[held])))
        sets = {}
        folds = group_folds(groups, 5)
        err, got = np.zeros(len(X)), {k: np.zeros(len(X)) for k in SINGLE}
        for f in np.unique(folds):
            m = folds == f
            p, s = scores(X[~m], d[~m], cn[~m], groups[~m], X[m], a.trees, a.local)
            err[m] = np.abs(p - d[m])
            for k in SINGLE:
                got[k][m] = s[k]
        sets["parents held out"] = (err, got)
        if el == "Cu":
            Xo, do, _, go = prepare(lib.where(source=OMNIXAS_SOURCE, element="Cu"))
            new = np.flatnonzero(~np.isin(go, groups))
            pick = rng.choice(new, min(1500, len(new)), replace=False)
            p, s = scores(X, d, cn, groups, Xo[pick], a.trees, a.local)
            sets["OmniXAS FEFF 9, new parents"] = (np.abs(p - do[pick]), s)
        for name, (e, s) in sets.items():
            big = e > 3 * mae
            cells = []
            for k in SINGLE:
                if np.isnan(ref[k]).all():  # not computed (--no-local-error)
                    cells.append("-")
                    continue
                flag = s[k] > np.quantile(ref[k], 0.9)
                cells.append(f"{flag.mean():.2f} / {flag[big].mean():.2f}")
            for keys in COMBINED.values():
                in_family = np.mean([percentile(ref[k], ref[k]) for k in keys], axis=0)
                flag = np.mean([percentile(ref[k], s[k]) for k in keys], axis=0) > np.quantile(in_family, 0.9)
                cells.append(f"{flag.mean():.2f} / {flag[big].mean():.2f}")
            for keys in EITHER.values():
                q = next(q for q in np.linspace(0.9, 1.0, 101)
                         if np.any([ref[k] > np.quantile(ref[k], q) for k in keys], axis=0).mean() <= 0.1)
                flag = np.any([s[k] > np.quantile(ref[k], q) for k in keys], axis=0)
                cells.append(f"{flag.mean():.2f} / {flag[big].mean():.2f}")
            print(f"| {el}, {name} | {len(e)} | {big.sum()} (in-family MAE {mae:.3f} A) | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
