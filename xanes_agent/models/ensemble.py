"""Seed-ensemble random forests with the scikit-learn estimator API.

The study trains every model with 10 random seeds; the spread across seeds is the uncertainty the
live agent reports. ``SeedEnsembleClassifier`` (coordination number, with random over-sampling of
minority classes on the training data only) and ``SeedEnsembleRegressor`` (distance, charge) each
hold ``n_seeds`` fitted forests in ``estimators_`` and expose per-seed predictions.

Defaults: 100 trees per forest; classifier ``max_features="sqrt"``, regressor ``max_features=1/3``
(Breiman's regression default), otherwise scikit-learn defaults. Torrisi et al. used scikit-learn
random forests with modest tuning; their exact settings are not restated here, so these are the
documented defaults and every one is a constructor parameter.

``feature_subsets`` (both ensembles): column subsets the seeds' forests cycle through, seed s
fitted on ``X[:, feature_subsets[s % len(feature_subsets)]]`` (a committee of views: e.g. half
the forests on the whole window, half on the pre-edge and edge alone, so that region has its own
say; :func:`~xanes_agent.models.features.view_columns`). Each forest's trees keep the subset's
local indices; :attr:`columns_` maps them back (:meth:`~.packed.PackedForests.from_sklearn`).

``trees`` (both ensembles): ``"random"`` (Breiman's random forests, the study's) or ``"extra"``
(Geurts et al.'s extremely randomized trees: split thresholds drawn at random, no bootstrap;
smoother functions of the spectrum, which the regressors' errors on new structures favour,
docs/models.md session 36). Both pack alike: the same trees, the same NaN routing.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted


def random_oversample(X: np.ndarray, y: np.ndarray, random_state: int | np.random.Generator | None = None,
                      sample_weight: np.ndarray | None = None):
    """Duplicate randomly drawn rows of every minority class until all classes match the largest.

    Equivalent to imbalanced-learn's ``RandomOverSampler(sampling_strategy="not majority")``. Only
    ever applied to training data. With ``sample_weight``, classes are matched in total weight
    instead of in rows (rows drawn with probability proportional to their weight, each copy keeping
    its row's weight), and (X, y, weight) is returned; without it, (X, y).
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    if sample_weight is None:
        classes, counts = np.unique(y, return_counts=True)
        target = counts.max()
        idx = [np.arange(len(y))]
        for c, n in zip(classes, counts):
            if n < target:
                idx.append(rng.choice(np.flatnonzero(y == c), target - n, replace=True))
        idx = np.concatenate(idx)
        return X[idx], y[idx]
    w = np.asarray(sample_weight, float)
    classes = np.unique(y)
    totals = np.array([w[y == c].sum() for c in classes])
    idx = [np.arange(len(y))]
    for c, total in zip(classes, totals):
        rows = np.flatnonzero(y == c)
        missing = totals.max() - total
        if missing <= 0 or not w[rows].sum() > 0:  # nothing to draw from (a class of zero weight stays so)
            continue
        p = w[rows] / w[rows].sum()
        # draw until the class's weight reaches the largest class's (the mean drawn weight sets how many)
        n = int(round(missing / float(np.dot(p, w[rows]))))
        if n:
            idx.append(rng.choice(rows, n, replace=True, p=p))
    idx = np.concatenate(idx)
    return X[idx], y[idx], w[idx]


def _fit_one(forest, X, y, oversample_seed, sample_weight=None):
    if oversample_seed is not None:
        if sample_weight is None:
            X, y = random_oversample(X, y, oversample_seed)
        else:
            X, y, sample_weight = random_oversample(X, y, oversample_seed, sample_weight)
    return forest.fit(X, y, sample_weight=sample_weight)


class _SeedEnsemble(BaseEstimator):
    """The shared part of both ensembles; parameters as scikit-learn's forests', keyword-only.

    ``random_state``: an int gives the forests seeds ``random_state + s`` (s = 0 .. n_seeds - 1; the
    over-sampling of seed s uses ``random_state + 1000 + s``), so a bundle is reproduced from its
    recorded seed; ``None``, a ``RandomState`` or a ``Generator`` draws the seeds from it.
    """

    _FORESTS: dict[str, type]  # ``trees`` -> the scikit-learn forest

    def __init__(self, *, n_seeds: int = 10, n_estimators: int = 100, max_features="sqrt",
                 min_samples_leaf: int = 1, max_depth: int | None = None, random_state=0,
                 n_jobs: int | None = None, feature_subsets=None, trees: str = "random"):
        self.trees = trees
        self.n_seeds = n_seeds
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_subsets = feature_subsets

    def _columns(self, n_features: int) -> list[np.ndarray] | None:
        """The feature columns of each seed's forest (None where no subsets are given: every forest
        sees ``X`` itself, not a copy of it)."""
        subsets = self.feature_subsets
        if subsets is None or not len(subsets):
            return None
        cols = [np.asarray(c, dtype=np.intp).reshape(-1) for c in subsets]
        if int(self.n_seeds) < len(cols):
            raise ValueError(f"{len(cols)} feature subsets need at least as many seeds, got n_seeds={self.n_seeds}")
        for c in cols:
            if not len(c) or c.min() < 0 or c.max() >= n_features or len(np.unique(c)) != len(c):
                raise ValueError(f"a feature subset must be distinct column indices below {n_features}, got {c}")
        return [cols[s % len(cols)] for s in range(int(self.n_seeds))]

    def _per_seed(self, X, method: str) -> np.ndarray:
        check_is_fitted(self)
        X = np.asarray(X, float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be 2-D with {self.n_features_in_} features, got shape {X.shape}")
        columns = self.columns_ or [slice(None)] * len(self.estimators_)
        return np.stack([getattr(e, method)(X[:, c]) for e, c in zip(self.estimators_, columns)])

    def _seeds(self) -> tuple[list[int], list[int]]:
        """(forest seeds, over-sampling seeds), one each per ensemble member."""
        n = int(self.n_seeds)
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            base = int(self.random_state)
            return [base + s for s in range(n)], [base + 1000 + s for s in range(n)]
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            draws = rs.integers(0, 2**31 - 1, size=2 * n)
        else:
            draws = check_random_state(rs).randint(0, 2**31 - 1, size=2 * n)
        return [int(d) for d in draws[:n]], [int(d) for d in draws[n:]]

    def _forests(self, seeds: list[int]):
        if self.trees not in self._FORESTS:
            raise ValueError(f"trees {self.trees!r}: one of {', '.join(self._FORESTS)}")
        return [
            self._FORESTS[self.trees](n_estimators=self.n_estimators, max_features=self.max_features,
                                      min_samples_leaf=self.min_samples_leaf, max_depth=self.max_depth,
                                      random_state=sd, n_jobs=1)
            for sd in seeds
        ]

    def _fit(self, X, y, oversample: bool, sample_weight=None):
        X = np.asarray(X, float)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label, got X {X.shape} and y {y.shape}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, float)
            if sample_weight.shape != (len(y),) or not np.all(np.isfinite(sample_weight)) or np.any(
                    sample_weight < 0) or not sample_weight.sum() > 0:
                raise ValueError("sample_weight must be one finite, non-negative weight per row, not all zero")
        columns = self._columns(X.shape[1])
        forest_seeds, sample_seeds = self._seeds()
        if not oversample:
            sample_seeds = [None] * len(forest_seeds)
        # each seed is one job: deterministic for a given random_state whatever n_jobs is
        views = columns or [slice(None)] * len(forest_seeds)  # a basic slice: X itself, no copy
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_one)(f, X[:, c], y, sd, sample_weight)
            for f, sd, c in zip(self._forests(forest_seeds), sample_seeds, views))
        self.columns_ = columns
        self.n_features_in_ = X.shape[1]
        imp = np.zeros((len(self.estimators_), X.shape[1]))
        for k, (e, c) in enumerate(zip(self.estimators_, views)):
            imp[k, c] = e.feature_importances_  # a column a forest never saw has no importance in it
        self.feature_importances_ = imp.mean(axis=0)
        self.feature_importances_std_ = imp.std(axis=0)
        return self


class SeedEnsembleClassifier(ClassifierMixin, _SeedEnsemble):
    """``n_seeds`` random-forest classifiers, each trained on a random over-sampling of the data.

    Parameters
    ----------
    n_seeds : int
        Forests, one per seed (the study: 10).
    n_estimators : int
        Trees per forest.
    max_features, min_samples_leaf, max_depth
        As scikit-learn's ``RandomForestClassifier``.
    random_state : int, RandomState, Generator or None
        See the class docstring of the shared base: an int reproduces the study's seeds.
    n_jobs : int, optional
        joblib workers over the seeds (results do not depend on it).
    oversample : bool
        Over-sample the minority classes of the training data (the study's random over-sampling).
    feature_subsets : list of index arrays, optional
        Columns each seed's forest sees, cycled over the seeds (module docstring); None: all.
    trees : {"random", "extra"}
        Random forests or extremely randomized trees (module docstring).

    Attributes
    ----------
    estimators_ : list of RandomForestClassifier (ExtraTreesClassifier with ``trees="extra"``)
    columns_ : list of ndarray or None
        The columns of ``X`` each forest was fitted on (its trees' feature indices index these;
        None: every column).
    classes_ : ndarray
    feature_importances_, feature_importances_std_ : ndarray
        Impurity importances, mean and spread over the seeds.
    """

    _FORESTS = {"random": RandomForestClassifier, "extra": ExtraTreesClassifier}

    def __init__(self, *, n_seeds: int = 10, n_estimators: int = 100, max_features="sqrt",
                 min_samples_leaf: int = 1, max_depth: int | None = None, random_state=0,
                 n_jobs: int | None = None, oversample: bool = True, feature_subsets=None, trees: str = "random"):
        super().__init__(n_seeds=n_seeds, n_estimators=n_estimators, max_features=max_features,
                         min_samples_leaf=min_samples_leaf, max_depth=max_depth, random_state=random_state,
                         n_jobs=n_jobs, feature_subsets=feature_subsets, trees=trees)
        self.oversample = oversample

    def fit(self, X, y, sample_weight=None):
        """Fit the seeds' forests.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)
        y : array, shape (n_samples,)
            Class labels.
        sample_weight : array, shape (n_samples,), optional
            Row weights (e.g. one in the number of spectra of the row's parent structure, so a
            family of many near-copies counts as one structure); over-sampling then matches the
            classes' total weights.

        Returns
        -------
        self
        """
        self._fit(X, y, self.oversample, sample_weight)
        self.classes_ = self.estimators_[0].classes_
        return self

    def predict_proba_per_seed(self, X) -> np.ndarray:
        """Class probabilities of each seed.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_seeds, n_samples, n_classes)
        """
        return self._per_seed(X, "predict_proba")

    def predict_proba(self, X) -> np.ndarray:
        return self.predict_proba_per_seed(X).mean(axis=0)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class SeedEnsembleRegressor(RegressorMixin, _SeedEnsemble):
    """``n_seeds`` random-forest regressors; the mean is the prediction, the std their spread
    (a spread, not a predictive uncertainty: see :mod:`xanes_agent.models.calibration`).

    Parameters
    ----------
    n_seeds : int
        Forests, one per seed (the study: 10).
    n_estimators : int
        Trees per forest.
    max_features, min_samples_leaf, max_depth
        As scikit-learn's ``RandomForestRegressor`` (``max_features`` default 1/3).
    random_state : int, RandomState, Generator or None
        An int reproduces the study's seeds.
    n_jobs : int, optional
        joblib workers over the seeds.
    feature_subsets : list of index arrays, optional
        Columns each seed's forest sees, cycled over the seeds (module docstring); None: all.
    trees : {"random", "extra"}
        Random forests or extremely randomized trees (module docstring).

    Attributes
    ----------
    estimators_ : list of RandomForestRegressor (ExtraTreesRegressor with ``trees="extra"``)
    columns_ : list of ndarray or None
        The columns of ``X`` each forest was fitted on (None: every column).
    feature_importances_, feature_importances_std_ : ndarray
    """

    _FORESTS = {"random": RandomForestRegressor, "extra": ExtraTreesRegressor}

    def __init__(self, *, n_seeds: int = 10, n_estimators: int = 100, max_features=1 / 3,
                 min_samples_leaf: int = 1, max_depth: int | None = None, random_state=0,
                 n_jobs: int | None = None, feature_subsets=None, trees: str = "random"):
        super().__init__(n_seeds=n_seeds, n_estimators=n_estimators, max_features=max_features,
                         min_samples_leaf=min_samples_leaf, max_depth=max_depth, random_state=random_state,
                         n_jobs=n_jobs, feature_subsets=feature_subsets, trees=trees)

    def fit(self, X, y, sample_weight=None):
        """Fit the seeds' forests.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)
        y : array, shape (n_samples,)
            Targets (Å for distances, the label's own unit for charges).
        sample_weight : array, shape (n_samples,), optional
            Row weights, as scikit-learn's forests take them.

        Returns
        -------
        self
        """
        return self._fit(X, np.asarray(y, float), oversample=False, sample_weight=sample_weight)

    def predict_per_seed(self, X) -> np.ndarray:
        """Predictions of each seed.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_seeds, n_samples)
        """
        return self._per_seed(X, "predict")

    def predict(self, X) -> np.ndarray:
        return self.predict_per_seed(X).mean(axis=0)
