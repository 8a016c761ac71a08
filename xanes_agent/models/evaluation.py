"""Out-of-family evaluation: how models do on structures (and codes) they were not built from.

A library split by material only tests interpolation: a held-out material's siblings (the same
prototype family, or the same host structure) are in training. Here whole *groups* are held out:

* :func:`group_folds` assigns every parent structure (a prototype family, a Materials Project host;
  :func:`~xanes_agent.data.library.parent_groups`) to one of k folds, so leaving a fold out leaves
  whole families / parent structures out;
* :func:`out_of_group_predictions` trains on the other folds and predicts the left-out one, for
  coordination number (seed-ensemble classifier with over-sampling), mean neighbour distance and
  the charge-like label;
* :func:`summarize` reports balanced accuracy and accuracy beside the best constant answer for the
  evaluated rows (their most frequent class: the baseline a model must beat), the confusion
  matrix, MAE and R^2 beside the MAE of the best constant (the evaluated rows' median).

Pure functions of arrays: the benchmark ``benchmarks/transfer.py`` reads the library and prints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, mean_absolute_error, r2_score

from .ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor
from .features import Grid
from .neighbours import NeighbourVote

CN_CLASSES = (4, 5, 6)
TARGETS = ("coordination_number", "mean_nn_distance", "oxidation_state")


def on_cn_classes(proba: np.ndarray, classes) -> np.ndarray:
    """Class probabilities of a classifier that knows ``classes`` spread onto the columns of all
    :data:`CN_CLASSES` (a class the training data lacked gets 0)."""
    out = np.zeros((len(proba), len(CN_CLASSES)))
    out[:, [CN_CLASSES.index(int(c)) for c in classes]] = proba
    return out


def group_folds(groups: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """Fold index (0..n_folds-1) of each row, fixed by a hash of its group (parent structure):
    every group lies wholly in one fold, and a group keeps its fold as the library grows. With
    fewer groups than folds, each group is its own fold (leave-one-group-out)."""
    uniq = sorted(set(groups.tolist()))
    if len(uniq) <= n_folds:
        index = {g: i for i, g in enumerate(uniq)}
    else:
        index = {g: int(hashlib.sha256(g.encode()).hexdigest()[:8], 16) % n_folds for g in uniq}
    return np.array([index[g] for g in groups.tolist()], dtype=int)


def joint_group_folds(groups_a: np.ndarray, groups_b: np.ndarray, n_folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_folds` over two sets at once (e.g. two codes' spectra of the same parent
    structures): a group has one fold in both. Returns the folds of each set's rows."""
    folds = group_folds(np.concatenate([np.asarray(groups_a), np.asarray(groups_b)]), n_folds)
    return folds[:len(groups_a)], folds[len(groups_a):]


@dataclass
class EvalConfig:
    n_seeds: int = 1
    n_estimators: int = 100
    min_samples_leaf: int = 1
    n_jobs: int | None = -1
    random_state: int = 0
    weighting: str = "none"  # "parent": every parent structure weighs 1 in training (group_weights)
    # share of a nearest-neighbour CN vote among the training grid spectra in the CN probability
    # (:class:`~xanes_agent.models.neighbours.NeighbourVote`; 0: the forests alone)
    neighbour_vote: float = 0.0
    # who votes: "parent" (each parent structure once per CN, as the models do) or "spectrum"
    # (every training spectrum, the session-27 vote); "parent" needs the training rows' groups
    voters: str = "parent"
    # the vote's distances on spectra blurred by this Gaussian FWHM (eV; 0: none) on ``vote_grid``,
    # the grid of the spectra given to :func:`fit_predict`
    vote_blur: float = 0.0
    vote_grid: Grid | None = None
    # the CN classifier's committee of views (models.ensemble): the feature columns each seed's
    # forest sees, cycled over the seeds (features.view_columns); None: every forest sees every
    # feature (the regressors always do, as the models' do: models.training)
    feature_subsets: tuple[tuple[int, ...], ...] | None = None
    # the regressors' trees: "random" forests or "extra" (extremely randomized; the models' since
    # session 36, models.ensemble)
    regressor_trees: str = "random"


WEIGHTINGS = ("none", "parent")


def group_weights(groups: np.ndarray) -> np.ndarray:
    """One in the number of rows of each row's group: every group (parent structure) weighs 1 in
    total, so a prototype family of 25 near-copies counts as much as one host structure."""
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def group_mean_se(values: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """The mean of ``values`` with every group weighing 1 (as :func:`group_weights`) and its
    standard error over groups: the standard deviation of the groups' own means over the square
    root of their number (NaN for one group).

    Why: a held-out parent's rows (whole and masked copies of its sites) rise and fall together,
    so the sampling error of a per-parent coverage is set by the number of parents, not of rows; a
    coverage of 0.62 over 15 left-out families (standard error ~0.06) is not shown to miss 0.68."""
    values = np.asarray(values, float)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    se = float(np.std(means, ddof=1) / np.sqrt(len(means))) if len(means) > 1 else float("nan")
    return float(means.mean()), se


def fit_predict(F_train: np.ndarray, y_train: dict[str, np.ndarray], F_test: np.ndarray,
                cfg: EvalConfig = EvalConfig(), groups_train: np.ndarray | None = None,
                spectra: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Fit one model per target on the rows where that label is known; predict ``F_test``.

    Coordination: classes 4/5/6 only; returns the predicted class and the class probabilities
    (``coordination_number_proba``, columns in :data:`CN_CLASSES`). With ``cfg.weighting ==
    "parent"``, ``groups_train`` (the parent structure of each training row) sets the row weights
    (:func:`group_weights`, over the rows where the target is known).
    """
    if cfg.weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {cfg.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if cfg.weighting == "parent" and groups_train is None:
        raise ValueError("weighting='parent' needs the parent structure of each training row (groups_train)")
    if cfg.neighbour_vote > 0 and "coordination_number" in y_train:  # before any forest is fitted
        if spectra is None:
            raise ValueError("neighbour_vote needs the grid spectra (spectra=(train, test))")
        if cfg.voters == "parent" and groups_train is None:
            raise ValueError("a vote by parent needs the parent structure of each training row (groups_train)")
        if cfg.vote_blur > 0 and cfg.vote_grid is None:
            raise ValueError("a blurred vote needs the grid of the spectra (vote_grid)")
    out: dict[str, np.ndarray] = {}
    for name, y in y_train.items():
        ok = np.isfinite(y)
        if name == "coordination_number":
            ok &= np.isin(y, CN_CLASSES)
            if len(np.unique(y[ok])) < 2:
                continue
            clf = SeedEnsembleClassifier(n_seeds=cfg.n_seeds, n_estimators=cfg.n_estimators,
                                         min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.random_state,
                                         n_jobs=cfg.n_jobs, feature_subsets=cfg.feature_subsets)
            clf.fit(F_train[ok], y[ok].astype(int), sample_weight=_weights(cfg, groups_train, ok))
            proba = clf.predict_proba(F_test)
            if cfg.neighbour_vote > 0:
                parents = np.asarray(groups_train)[ok] if cfg.voters == "parent" else None
                proba = NeighbourVote.fit(spectra[0][ok], y[ok], clf.classes_, cfg.neighbour_vote,
                                          parents=parents, blur=cfg.vote_blur,
                                          grid=cfg.vote_grid).blend(proba, spectra[1])
            full = on_cn_classes(proba, clf.classes_)
            out[name] = np.array(CN_CLASSES)[np.argmax(full, axis=1)].astype(float)
            out[name + "_proba"] = full
        else:
            if ok.sum() < 5:
                continue
            reg = SeedEnsembleRegressor(n_seeds=cfg.n_seeds, n_estimators=cfg.n_estimators, trees=cfg.regressor_trees,
                                        min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.random_state,
                                        n_jobs=cfg.n_jobs)
            out[name] = reg.fit(F_train[ok], y[ok], sample_weight=_weights(cfg, groups_train, ok)).predict(F_test)
    return out


def _weights(cfg: EvalConfig, groups: np.ndarray | None, ok: np.ndarray) -> np.ndarray | None:
    return group_weights(groups[ok]) if cfg.weighting == "parent" else None


def out_of_group_predictions(F: np.ndarray, labels: dict[str, np.ndarray], folds: np.ndarray,
                             cfg: EvalConfig = EvalConfig(),
                             train_transform: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                             groups: np.ndarray | None = None,
                             excluded: Mapping[int, np.ndarray] | None = None,
                             spectra: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Predictions for every row from a model that never saw its fold.

    Rows with a negative fold are training-only: they are in every fold's training set and are
    never predicted (their predictions stay NaN), e.g. host structures while families are held out.
    ``excluded[f]`` (a boolean mask over the rows) keeps those rows out of fold ``f``'s training
    too, e.g. the host structures of the left-out family's structure type.
    ``train_transform(train_rows) -> (F_aug, source_row_of_each)`` may enlarge the training set
    (e.g. experiment-like copies); test rows are always the spectra as they are. ``groups`` (the
    parent structure of each row) is needed for ``cfg.weighting == "parent"``; ``spectra`` (the
    grid spectra of the rows) for ``cfg.neighbour_vote``.
    """
    n = len(F)
    pred: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in labels}
    pred["coordination_number_proba"] = np.full((n, len(CN_CLASSES)), np.nan)
    for f in np.unique(folds[folds >= 0]):
        test, train = folds == f, folds != f
        if excluded is not None and f in excluded:
            train = train & ~np.asarray(excluded[f], dtype=bool)
        rows = np.flatnonzero(train)
        if train_transform is not None:
            Ftr, src = train_transform(rows)
        else:
            Ftr, src = F[rows], rows
        got = fit_predict(Ftr, {k: v[src] for k, v in labels.items()}, F[test], cfg,
                          None if groups is None else np.asarray(groups)[src],
                          None if spectra is None else (spectra[src], spectra[test]))
        for k, v in got.items():
            pred[k][test] = v
    return pred


@dataclass
class Summary:
    n: int
    metrics: dict[str, Any] = field(default_factory=dict)
    confusion: np.ndarray | None = None


def summarize(labels: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> Summary:
    """Metrics of out-of-group predictions, each beside the best constant answer for these rows."""
    m: dict[str, Any] = {}
    conf = None
    y = labels.get("coordination_number")
    p = pred.get("coordination_number")
    if y is not None and p is not None:
        ok = np.isin(y, CN_CLASSES) & np.isfinite(p)
        if ok.any():
            m["cn_n"] = int(ok.sum())
            m["cn_accuracy"] = float(np.mean(p[ok] == y[ok]))
            m["cn_balanced_accuracy"] = float(balanced_accuracy_score(y[ok], p[ok]))
            m["cn_modal_baseline"] = float(np.unique(y[ok], return_counts=True)[1].max() / ok.sum())
            conf = confusion_matrix(y[ok].astype(int), p[ok].astype(int), labels=list(CN_CLASSES))
    for name, short in (("mean_nn_distance", "distance"), ("oxidation_state", "ox")):
        y, p = labels.get(name), pred.get(name)
        if y is None or p is None:
            continue
        ok = np.isfinite(y) & np.isfinite(p)
        if ok.sum() < 2:
            continue
        m[f"{short}_n"] = int(ok.sum())
        m[f"{short}_mae"] = float(mean_absolute_error(y[ok], p[ok]))
        m[f"{short}_r2"] = float(r2_score(y[ok], p[ok]))
        m[f"{short}_baseline_mae"] = float(np.mean(np.abs(y[ok] - np.median(y[ok]))))
    return Summary(n=len(next(iter(labels.values()))), metrics=m, confusion=conf)
