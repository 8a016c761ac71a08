"""Uncertainty that means what it says: calibrated out of family, stored with the model.

The seed spread of a forest ensemble is not a predictive uncertainty: seeds trained on the same
spectra agree even where all of them are wrong (a spectrum of an unseen structure type, another
code, a measurement). What is calibrated here, always on *out-of-group* predictions (models trained
with whole structure types left out where the library knows them, else whole parent structures:
:func:`~xanes_agent.data.library.type_groups`, :func:`~xanes_agent.models.evaluation.group_folds`),
on full spectra and on masked (partially measured) copies:

* **regression intervals** (distance, charge): split-conformal with a difficulty scale. The score
  of a held-out spectrum is ``|y - prediction| / sigma(x)`` with ``sigma(x) = (s(x) + s0) x`` its
  domain score (1 for a typical spectrum, larger far from the training spectra), ``s(x)`` the
  spread of the property's trees' predictions and ``s0`` a quarter of its mean (:func:`difficulty`;
  until bundle format 11 ``sigma(x) = 0.5 + 0.5 x`` the domain score alone), and the interval
  at level L is ``prediction +- q_L sigma(x)``, ``q_L`` the conformal quantile of the scores, per
  band of coverage of the model window (0-50 %, 50-80 %, 80-100 %), so a partial spectrum gets
  the wider interval partial spectra earned, and per side of the domain flag (Mondrian; bundle
  format 12): for a spectrum in the domain, that for a *new parent structure* (each held-out
  parent weighs 1: :func:`group_conformal_quantile`) from the calibration spectra in the domain;
  for a flagged one, that for a new parent or, where larger, for a *new structure type* (the
  prototype families' types, :func:`band_quantiles`), from the flagged calibration spectra. Until
  format 12 every spectrum got the larger of the two, from all of them: new parents were then
  covered 0.74-0.81 at the nominal 68 % for Ti and V and the flagged spectra under (docs/models.md,
  session 47). In the domain the quantiles are fitted per quartile of sigma(x) as well (bundle
  format 13, :func:`scale_bin_quantiles`): the errors grow faster than the scale, and one table
  left the left-out prototype families, which lie where the scale is largest, covered 0.41-0.55
  at 68 % (Ti, folds by type; session 48). ``std`` in the agent's output is the half-width of
  the 68 % interval. (Weighing spectra instead, a prototype family of 40 strained copies counted
  40 times, and new structures were covered 57-70 % at the nominal 68 %.)
* **intervals across codes** (where spectra of the element from another code are given): the
  same held-out fold models predict the other code's spectra of the held-out parents, whole and
  masked like the same-code ones, and the conformal quantiles of those scores (each parent
  weighing 1, per band of window coverage) are stored beside the same-code ones.
  A FEFF10-trained model errs more on FEFF 9 spectra of the same structures than on FEFF10 spectra
  of new ones (Cu distance: 0.08 against 0.06 A), and the domain score does not see why (the
  difference is in peak positions and widths, not in where a spectrum lies among the training
  spectra), so an interval for data that are not FEFF10 needs data that are not FEFF10 behind it.
  :class:`~xanes_agent.models.model.ElementModel` uses them with ``intervals="across-codes"``
  (spectra from another code or a measurement); the other code's spectra never train a model.
* **coordination-number probability**: the probability of the predicted class is mapped by an
  isotonic (monotone) fit of out-of-group accuracy against out-of-group confidence, each parent
  weighing 1, clipped to [1/K, 1]; one map for spectra in the domain and one for spectra out of
  it (forests are right less often there at the same confidence); the other classes share the
  rest in their proportions. The map is fitted only where it can be: folds that hold parents out
  cannot show how a class fails that the training data hold in fewer than 5 parent structures;
  there the forests' probability is kept as it is, and the bundle says why. Nor is it kept where it
  does not carry over to structures it has not seen: fitted on all calibration folds but one, it
  must lower the ECE (each parent weighing 1) on the one left out, pooled over folds
  (:func:`map_ece_across_folds`; both figures go into the bundle), else the forests' own
  probability is reported. Out of family (session 11) this took the pooled ECE of all elements
  from 0.045 to 0.032 and the per-spectrum ECE of Fe, Co, Ni from 0.107-0.137 to 0.040-0.060;
  per parent it moved Fe from 0.061 to 0.036 and Co from 0.045 to 0.056 (Ni, Cu +0.003, the
  others unchanged): the choice is made per calibration, and is itself noisy. What it does and does
  not achieve is measured in ``benchmarks/calibration.py`` (docs/models.md): across codes it takes the
  ECE from 0.045 to 0.018; out of family, where one left-out family can be wrong with confidence
  0.99 (Ti's square pyramids when they are the only CN 5 family), it is no better than the
  forests' own probability per parent structure. (Temperature scaling and shrinking
  out-of-domain probabilities toward uniform were tried earlier and did worse.) Where the bundle
  is calibrated across codes, another code's spectra get a map of their own
  (:func:`across_codes_confidence_map`, the same rules, fitted on the fold models' probabilities
  for that code's held-out parents): by session 20 the same-code map stated ECE 0.064 on FEFF 9
  Cu spectra against the forests' own 0.032, and the map across codes 0.009 (session 21).
* **applicability domain**: the mean Euclidean distance from a spectrum's standardized features
  (:data:`DOMAIN_FEATURIZATION`, whatever the models train on; bundle format 9) to
  its 5 nearest training spectra (up to 1,500 stored; features a partial spectrum lacks count as
  typical, and the distance is scaled by sqrt(features / features measured)), divided by the
  median of that distance for a training spectrum to the training spectra of *other* materials
  (its in-family neighbours, as a held-out material meets them: a site's FSR and RPA spectra are
  one material). A spectrum is flagged out of domain above the 95th percentile of that
  in-family distance (``TrainConfig.domain_quantile``): a spectrum farther from the training
  spectra than 95 % of them are from each other, per band of window coverage (bundle format 8:
  the training spectra masked to the calibration windows give the partial bands' limits; one
  limit for every coverage flagged about half of the in-family spectra measured over the low
  30 % of the window, Fe, session 32). (At the 90th percentile 16-19 % of the in-family
  held-out spectra of Mn, Fe and Co were flagged, beyond the 10 % a flag may cost there.)
  Held-out families of the prototype library score 2-4. For a model trained for
  measured spectra (noise and E0-jitter copies), each feature's scale includes its spread under
  that measurement noise and the in-family distances are those of measured-like copies: the
  fine polynomial orders that noise alone moves otherwise flagged every measured spectrum (a
  clean held-out Cu spectrum scored 0.99, the same with 0.25 % counting noise 3.6).
  A second test (bundle format 7): a spectrum is also flagged where the distance forest's trees
  disagree (the standard deviation over every tree of every seed, which the fast path
  accumulates beside the means) beyond the same quantile of that spread on in-family held-out
  spectra (the training spectra, each scored by distance forests trained without its material:
  cross-fitted over 3 folds, as the model meets them, session 35), per band of window
  coverage, since a partial spectrum's trees disagree more. The distance alone does not see a
  spectrum that lies among training spectra of another label, and those are most of the large
  errors; where the trees split on what the training spectra do not settle, the spread does
  (scripts/domain_scores.py: the best of the candidates measured, sessions 15-29). Since bundle
  format 11 the two tests are read together (:meth:`DomainModel.flags`): either alone flags a
  spectrum beyond the 99th percentile of its in-family ratio to its limit, and the geometric mean
  of the two ratios takes the rest of the two tests' allowance, less a margin for a new split's
  draw (:func:`joint_flag_limits`, ``training.JOINT_SPLIT_MARGIN``); until
  then each flagged beyond its own limit, the spread's raised where the two together flagged
  more than the allowance. The CN maps' strata are the distance test's against its own limit
  (``domain_far``), on which they were calibrated.

These are the numbers the agent reports and the stop rules use. The arithmetic is the standard
one (conformal prediction: Vovk et al. 2005, Lei et al. 2018; isotonic calibration: Zadrozny &
Elkan 2002), written here against the packed forests rather than through ``mapie``/``quantile-forest``,
whose estimators would need the scikit-learn forests the agent's fast path replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LEVELS: tuple[float, ...] = (0.68, 0.90)
COVERAGE_EDGES: tuple[float, ...] = (0.0, 0.5, 0.8, 1.0 + 1e-9)
DOMAIN_K = 5
DOMAIN_QUANTILE = 0.95
MAX_REFERENCE = 1500
#: The features the domain score is taken on, whatever the models train on: the multiscale
#: polynomial coefficients (session 34: with the models on grid values, the flag on the grid values
#: caught 0.28 of Cu's large distance errors on new parents against 0.40 on these).
DOMAIN_FEATURIZATION = "polynomial"
MIN_STRATUM = 30
#: Bins of the interval scale sigma(x) for the spectra in the domain (bundle format 13): quartiles of
#: the calibration spectra's scale, each with its own quantiles (:func:`scale_bin_quantiles`).
SCALE_BINS = 4
#: Structure types held out in calibration from which the intervals also hold for a new type.
MIN_NEW_TYPES = 3


def valid_domain_quantile(q: float) -> bool:
    """Whether ``q`` can be the domain flag's quantile of the in-family distance."""
    return 0.5 <= q < 1.0


def coverage_band(fraction: np.ndarray | float) -> np.ndarray:
    """Index of the coverage band (see :data:`COVERAGE_EDGES`) of each coverage fraction."""
    f = np.clip(np.asarray(fraction, float), 0.0, 1.0)
    return np.clip(np.searchsorted(COVERAGE_EDGES, f, side="right") - 1, 0, len(COVERAGE_EDGES) - 2)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) L)-th smallest score: split-conformal coverage >= L for exchangeable data."""
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    if not len(s):
        return float("inf")
    k = int(np.ceil((len(s) + 1) * level)) - 1
    return float(s[min(max(k, 0), len(s) - 1)])


def group_conformal_quantile(scores: np.ndarray, groups: np.ndarray, level: float,
                             finite_sample: bool = True) -> float:
    """The conformal quantile for a spectrum of a *new group* (an unseen parent structure).

    Spectra of one parent are near copies of each other, so the exchangeable units are the groups,
    not the spectra: every group weighs 1 in all (its spectra share it) and the finite-sample
    correction counts groups, ``L (G + 1) / G`` (the pooled-CDF rule of Dunn, Wasserman & Ramdas,
    "Distribution-free prediction sets for two-layer hierarchical models", JASA 2022). A family
    of 40 near-identical spectra then counts once, like a host structure with one site.
    ``finite_sample=False``: the plain quantile at ``level`` of that pooled distribution (for a
    handful of groups, where the correction asks for the largest score of all).
    """
    scores = np.asarray(scores, float)
    ok = np.isfinite(scores)
    s, g = scores[ok], np.asarray(groups)[ok]
    if not len(s):
        return float("inf")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    n_groups = len(counts)
    target = level * (n_groups + 1) / n_groups if finite_sample else level
    if target >= 1.0:
        return float(s.max())
    order = np.argsort(s, kind="stable")
    cdf = np.cumsum(1.0 / counts[inv][order]) / n_groups
    return float(s[order][min(int(np.searchsorted(cdf, target - 1e-12)), len(s) - 1)])


def apply_confidence_map(proba: np.ndarray, knots_x: list[float], knots_y: list[float]) -> np.ndarray:
    """Calibrated class probabilities: the top class's mapped through the isotonic knots (linear
    between them, clipped at the ends), the other classes rescaled to share the rest."""
    p = np.atleast_2d(np.asarray(proba, float))
    k = np.argmax(p, axis=1)
    rows = np.arange(len(p))
    top = np.interp(p[rows, k], knots_x, knots_y)
    rest = p.copy()
    rest[rows, k] = 0.0
    tot = rest.sum(axis=1, keepdims=True)
    share = np.where(tot > 0, rest / np.where(tot > 0, tot, 1.0), 1.0 / max(p.shape[1] - 1, 1))
    share[rows, k] = 0.0
    out = share * (1.0 - top)[:, None]
    out[rows, k] = top
    return out


def fit_confidence_map(proba: np.ndarray, y_index: np.ndarray, weights: np.ndarray | None = None
                       ) -> tuple[list[float], list[float]]:
    """Isotonic fit of 'the predicted class is right' against its probability; returns knots.
    ``weights``: per row (e.g. 1 / spectra of its parent, so each parent structure counts once)."""
    from sklearn.isotonic import IsotonicRegression

    conf = proba.max(axis=1)
    correct = (np.argmax(proba, axis=1) == y_index).astype(float)
    floor = 1.0 / proba.shape[1]
    iso = IsotonicRegression(y_min=floor, y_max=1.0, out_of_bounds="clip").fit(conf, correct, sample_weight=weights)
    xs = np.asarray(iso.X_thresholds_, float)
    ys = np.asarray(iso.y_thresholds_, float)
    if len(xs) < 2:  # a single confidence value seen: one level everywhere
        xs, ys = np.array([0.0, 1.0]), np.full(2, float(ys[0]) if len(ys) else floor)
    return xs.tolist(), ys.tolist()


def check_knots(knots: Any) -> tuple[list[float], list[float]]:
    """Confidence-map knots read from a file: two equal-length lists, x increasing in [0, 1],
    y in [0, 1]. Raises ValueError otherwise."""
    xs, ys = ([float(v) for v in knots[0]], [float(v) for v in knots[1]])
    if len(xs) != len(ys) or len(xs) < 2 or np.any(np.diff(xs) < 0) or not (
            np.all(np.isfinite(xs + ys)) and min(xs + ys) >= 0.0 and max(xs + ys) <= 1.0):
        raise ValueError("confidence-map knots must be two equal lists in [0, 1] with x increasing")
    return xs, ys


def fit_across_codes(y: np.ndarray, pred: np.ndarray, domain_score: np.ndarray, coverage: np.ndarray,
                     groups: np.ndarray, spread: np.ndarray | None = None, floor: float | None = None
                     ) -> list[list[float]]:
    """Conformal quantiles ([band][level], as the same-code ones) of ``|y - pred| / sigma`` for
    another code's spectra, whole and masked, of held-out parent structures, each parent weighing 1;
    ``spread``, ``floor``: the trees' spread and the same-code floor (:func:`difficulty`)."""
    ok = np.isfinite(y) & np.isfinite(pred)
    scores = np.where(ok, np.abs(y - pred) / difficulty(domain_score, spread, floor), np.nan)
    return band_quantiles(scores, coverage_band(coverage), groups)


def band_quantiles(scores: np.ndarray, band: np.ndarray, groups: np.ndarray | None,
                   types: np.ndarray | None = None) -> list[list[float]]:
    """Conformal quantiles of finite ``scores`` per coverage band and level: for a new parent
    (``groups`` given) or a new spectrum; a band of fewer than 20 rows takes all rows
    (conservative: partial rows included).

    ``types`` (with ``groups``): each row's structure type where it is one of the library's
    prototype families' (``type:<name>``, :func:`~xanes_agent.data.library.type_groups`), else
    anything else. The rows of those types, held out with their whole type, are spectra of a
    structure type the training lacked; the quantile is then the larger of the one for a new
    parent and the one for a new type (each type weighing 1; from :data:`MIN_NEW_TYPES` types on).
    A spectrum cannot tell which of the two it is (the domain score does not: session 25), so
    the interval must hold for both, and for structures of a known type it is wider than needed;
    :func:`fit_calibration` therefore takes it only for the spectra the domain flag flags.
    The new-type quantile is the plain one of the types' pooled scores: with the 9-13 types an
    element's families make, the finite-sample rule takes the largest error of all for 90 %, and
    held-out families were then covered 99-100 % of the time (session 26), 87-92 % without it.
    """
    ok = np.isfinite(scores)
    new = None if types is None or groups is None else ok & np.char.startswith(np.asarray(types, str), "type:")
    if new is not None and len(set(np.asarray(types)[new].tolist())) < MIN_NEW_TYPES:
        new = None
    table = []
    for b in range(len(COVERAGE_EDGES) - 1):
        sel = ok & (band == b)
        if sel.sum() < 20:
            sel = ok
        if groups is None:
            table.append([conformal_quantile(scores[sel], L) for L in LEVELS])
            continue
        row = [group_conformal_quantile(scores[sel], np.asarray(groups)[sel], L) for L in LEVELS]
        if new is not None:
            in_band = new & (band == b)
            fresh = in_band if in_band.sum() >= 20 else new
            row = [max(q, group_conformal_quantile(scores[fresh], np.asarray(types)[fresh], L, finite_sample=False))
                   for q, L in zip(row, LEVELS)]
        table.append(row)
    return table


def scale_bin_quantiles(scores: np.ndarray, sigma: np.ndarray, band: np.ndarray, groups: np.ndarray,
                        n_bins: int = SCALE_BINS) -> list[dict[str, list]]:
    """Conformal quantiles for a new parent per coverage band and per bin of the interval scale
    ``sigma`` (Mondrian on the difficulty estimate: Bostrom & Johansson, "Mondrian conformal
    regressors", COPA 2020): per band ``{"edges": [...], "quantiles": [[q68, q90] per bin]}``, the
    bins split at the quantiles of the finite-score rows' ``sigma`` (``n_bins`` equal shares), a
    spectrum's bin the one its own sigma falls in (:func:`scale_bin_index`).

    Why (session 48): the errors of held-out spectra grow faster than the scale; pooled, the
    quantile over-covers the spectra the trees agree on and under-covers those they split on,
    which are where the left-out prototype families lie (Ti, folds by parent: 44 % of the spectra in
    the domain's top third of the scale were the families', 1 % of its lowest third; with folds by
    type the families were covered 0.41 at the nominal 68 % (charge label) with one table, 0.69
    with the bins, every parent 0.70 either way).
    A bin of fewer than :data:`MIN_STRATUM` rows, or whose 68 % quantile is 0 (an integer label the
    trees all predicted exactly: an interval of no width), is merged with its neighbour; a band of
    fewer than 20 rows takes all rows, as :func:`band_quantiles`."""
    ok = np.isfinite(scores) & np.isfinite(sigma)
    groups = np.asarray(groups)
    table = []
    for b in range(len(COVERAGE_EDGES) - 1):
        sel = ok & (band == b)
        if sel.sum() < 20:
            sel = ok
        s, sg, g = scores[sel], np.asarray(sigma, float)[sel], groups[sel]
        edges = list(np.unique(np.quantile(sg, np.linspace(0, 1, n_bins + 1)[1:-1]))) if len(s) else []
        while True:
            idx = scale_bin_index(edges, sg)
            qs = [[group_conformal_quantile(s[idx == k], g[idx == k], L) for L in LEVELS]
                  for k in range(len(edges) + 1)]
            bad = [k for k in range(len(edges) + 1) if (idx == k).sum() < MIN_STRATUM or not qs[k][0] > 0]
            if not bad or not edges:
                break
            k = bad[0]
            edges.pop(min(k, len(edges) - 1))  # merge bin k with the next one (the last with the one before)
        table.append({"edges": [float(e) for e in edges], "quantiles": qs})
    return table


def scale_bin_index(edges: list[float], sigma: np.ndarray) -> np.ndarray:
    """The bin of each ``sigma`` among ``edges`` (a bin holds its lower edge)."""
    return np.searchsorted(np.asarray(edges, float), np.asarray(sigma, float), side="right")


def check_scale_bins(table: Any, props: Any, name: str) -> dict[str, list[dict[str, list]]]:
    """Scale-binned quantiles read from a file (``name``: their key in the bundle): per known
    property, per coverage band, increasing finite positive ``edges`` (at most 16) and one
    non-negative finite number per level for each of the ``len(edges) + 1`` bins. Raises
    ValueError otherwise."""
    if not isinstance(table, dict):
        raise ValueError(f"{name} must be a mapping of property to scale bins")
    bands = len(COVERAGE_EDGES) - 1
    out = {}
    for k, v in table.items():
        what = f"{name}[{k!r}]: per coverage band, increasing positive edges and non-negative quantiles per bin"
        if k not in props or not isinstance(v, list) or len(v) != bands:
            raise ValueError(what + " for a known property")
        rows = []
        for entry in v:
            if not isinstance(entry, dict) or set(entry) != {"edges", "quantiles"}:
                raise ValueError(what)
            e, q = np.asarray(entry["edges"], float), np.asarray(entry["quantiles"], float)
            if e.ndim != 1 or len(e) > 16 or not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(np.diff(e) <= 0) \
                    or q.shape != (len(e) + 1, len(LEVELS)) or not (np.all(np.isfinite(q)) and np.all(q >= 0)):
                raise ValueError(what)
            rows.append({"edges": e.tolist(), "quantiles": q.tolist()})
        out[str(k)] = rows
    return out


def check_quantiles(table: Any, props: Any, name: str) -> dict[str, list[list[float]]]:
    """A table of quantiles read from a file (``name``: its key in the bundle, for the error): per
    known property, one non-negative finite number per coverage band and level. Raises ValueError
    otherwise."""
    if not isinstance(table, dict):
        raise ValueError(f"{name} must be a mapping of property to quantiles")
    bands = len(COVERAGE_EDGES) - 1
    out = {}
    for k, v in table.items():
        q = np.asarray(v, float)
        if k not in props or q.shape != (bands, len(LEVELS)) or not (np.all(np.isfinite(q)) and np.all(q >= 0)):
            raise ValueError(f"{name}[{k!r}]: {bands} x {len(LEVELS)} non-negative numbers "
                             "for a known property")
        out[str(k)] = q.tolist()
    return out


def check_spread_floors(floors: Any, props: Any) -> dict[str, float]:
    """Interval spread floors read from a file: per known property, one positive finite number.
    Raises ValueError otherwise."""
    if not isinstance(floors, dict):
        raise ValueError("interval_spread_floors must be a mapping of property to a number")
    out = {}
    for k, v in floors.items():
        if k not in props or isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and v > 0):
            raise ValueError(f"interval_spread_floors[{k!r}]: a positive number for a known property")
        out[str(k)] = float(v)
    return out


def group_weights(groups: np.ndarray | None, n: int) -> np.ndarray | None:
    """1 / (rows of the same group) per row, so each group weighs 1; None without groups."""
    if groups is None:
        return None
    _, inv, counts = np.unique(np.asarray(groups)[:n], return_inverse=True, return_counts=True)
    return 1.0 / counts[inv]


def confidence_ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10, weights: np.ndarray | None = None) -> float:
    """ECE of stated confidences: sum over confidence bins of |accuracy - confidence| x share;
    ``weights`` per row (e.g. 1 / rows of its parent structure, so each parent weighs 1)."""
    conf = np.asarray(conf, float)
    correct = np.asarray(correct, float)
    w = np.ones(len(conf)) if weights is None else np.asarray(weights, float)
    b = np.clip(np.searchsorted(np.linspace(0, 1, bins + 1), conf, side="right") - 1, 0, bins - 1)
    total = w.sum()
    return float(sum(abs(np.average(correct[b == i], weights=w[b == i]) - np.average(conf[b == i], weights=w[b == i]))
                     * w[b == i].sum() / total for i in range(bins) if np.any(b == i)))


def expected_calibration_error(proba: np.ndarray, y_index: np.ndarray, bins: int = 10,
                               weights: np.ndarray | None = None) -> float:
    """ECE of the top-class probability (:func:`confidence_ece`)."""
    return confidence_ece(proba.max(axis=1), np.argmax(proba, axis=1) == y_index, bins, weights)


def map_ece_across_folds(proba: np.ndarray, y_index: np.ndarray, folds: np.ndarray,
                         weights: np.ndarray | None = None) -> tuple[float, float]:
    """(ECE of the forests' own probability, ECE of the isotonic map's) on rows the map was not
    fitted on: per fold, the map is fitted on the other folds' rows and applied to that fold's.
    Whether the map earns its place on a structure it has not seen, as a model meets one."""
    conf = proba.max(axis=1)
    correct = np.argmax(proba, axis=1) == y_index
    mapped = np.full(len(conf), np.nan)
    for f in np.unique(folds):
        te = folds == f
        if te.all():
            continue
        kx, ky = fit_confidence_map(proba[~te], y_index[~te], None if weights is None else weights[~te])
        mapped[te] = np.interp(conf[te], kx, ky)
    ok = np.isfinite(mapped)
    w = None if weights is None else weights[ok]
    return confidence_ece(conf[ok], correct[ok], weights=w), confidence_ece(mapped[ok], correct[ok], weights=w)


@dataclass
class DomainModel:
    """Distance of spectra (features) to the training spectra; see the module docstring."""

    center: np.ndarray
    scale: np.ndarray
    reference: np.ndarray  # (m, n_features) standardized training features, float32
    typical: float = 1.0
    threshold: float = float("inf")
    # measured-like copies of the reference rows, and which of the fitted rows those are (fit
    # only; not stored in a bundle)
    measured: np.ndarray | None = field(default=None, repr=False)
    reference_rows: np.ndarray | None = field(default=None, repr=False)
    # the material (integer code) of each reference row: a spectrum's in-family neighbours are of
    # other materials, as a held-out material's are (fit only)
    reference_groups: np.ndarray | None = field(default=None, repr=False)
    # the first test per coverage band: the score above which a spectrum of that coverage is
    # flagged (None: ``threshold`` in every band, as bundles before format 8 were calibrated)
    far_limits: np.ndarray | None = None
    # the second test: the distance forest's trees' spread (A) above which a spectrum is flagged,
    # per coverage band (inf: no limit there; None: the distance alone decides); with
    # ``joint_limits``, the spread in-family spectra stay under (the ratio's unit, as ``far_limits``)
    spread_limits: np.ndarray | None = None
    # the two tests together (bundle format 11; None: each test alone at its limit, as before):
    # per coverage band, the ratio to its limit either test alone must exceed, and the one the
    # geometric mean of the two ratios must exceed (:meth:`flags`)
    alone_limits: np.ndarray | None = None
    joint_limits: np.ndarray | None = None
    spread_property: str = "mean_nn_distance"
    # the featurization of the features it is given (None: the model's own, as bundles before
    # format 9 were calibrated)
    featurization: str | None = None

    @classmethod
    def fit(cls, F: np.ndarray, rng: np.random.Generator | None = None, F_measured: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> DomainModel:
        """Reference and scale from training features ``F``.

        ``F_measured``: the same rows as a measurement would give them (noise, E0 jitter: the
        copies a live model trains on). Each feature's scale then includes its measurement
        variance, so features that noise alone moves (the fine polynomial orders) do not make every
        measured spectrum look foreign, and :meth:`in_family_distance` is taken from those copies.
        ``groups``: the material of each row; :meth:`in_family_distance` then leaves a spectrum's
        whole material out of its neighbours, not only itself.
        """
        F = np.asarray(F, float)
        if groups is not None and len(groups) != len(F):
            raise ValueError(f"groups: one material per row of F ({len(F)}), got {len(groups)}")
        center = np.nanmean(F, axis=0)
        spread = np.nanvar(F, axis=0)
        if F_measured is not None:
            spread = spread + np.nan_to_num(np.nanvar(np.asarray(F_measured, float) - F, axis=0))
        scale = np.sqrt(spread)
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        rows = np.arange(len(F))
        if len(rows) > MAX_REFERENCE:
            rows = np.sort((rng or np.random.default_rng(0)).choice(rows, MAX_REFERENCE, replace=False))
        ref = np.nan_to_num((F[rows] - center) / scale).astype(np.float32)
        codes = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()[rows]
        return cls(center=center, scale=scale, reference=ref, reference_rows=rows, reference_groups=codes,
                   measured=None if F_measured is None else np.asarray(F_measured, float)[rows])

    def distance(self, F: np.ndarray) -> np.ndarray:
        """Mean distance to the :data:`DOMAIN_K` nearest reference spectra (standardized units)."""
        return self._knn(F)

    def in_family_distance(self, Q: np.ndarray | None = None) -> np.ndarray:
        """Each reference spectrum's distance to the reference spectra of *other* materials (where
        :meth:`fit` was given the materials; else to the others: leave-self-out): from ``Q``
        (features, rows aligned with the reference rows, e.g. masked copies of them), else from
        its measured copy where :meth:`fit` was given those, else from itself.

        Why the material: a held-out material's siblings train, its own spectra do not. A site's
        FSR and RPA spectra are one material, as are a host site substituted at two oxidation
        states; leaving only the spectrum itself out found its twin, so the limits were set on
        distances shorter than a new material's, and the flag took 0.12 of Cu's in-family
        held-out spectra where 0.10 is allowed (0.09 now; session 45, docs/models.md)."""
        if Q is None:
            Q = self.measured if self.measured is not None else self.reference * self.scale + self.center
        own = np.arange(len(self.reference)) if self.reference_groups is None else self.reference_groups
        return self._knn(Q, own=own)

    def _knn(self, F: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
        """:meth:`distance`; ``own``: each row's own reference row (or, with
        ``reference_groups``, its group), left out of its neighbours."""
        F = np.atleast_2d(np.asarray(F, float))
        measured = np.maximum(np.isfinite(F).sum(axis=1), 1)
        Z = np.nan_to_num((F - self.center) / self.scale).astype(np.float32)
        R = self.reference.astype(np.float64)
        out = np.empty(len(Z))
        by_group = own is not None and self.reference_groups is not None
        left_out = 0 if own is None else (np.bincount(self.reference_groups).max() if by_group else 1)
        k = min(DOMAIN_K, len(R) - left_out)
        r2 = (R ** 2).sum(axis=1)
        for a in range(0, len(Z), 512):  # bounded memory for large batches
            z = Z[a:a + 512].astype(np.float64)
            d2 = (z ** 2).sum(axis=1)[:, None] + r2[None, :] - 2.0 * z @ R.T
            if by_group:
                d2[own[a:a + 512, None] == self.reference_groups[None, :]] = np.inf
            elif own is not None:
                d2[np.arange(len(d2)), own[a:a + 512]] = np.inf
            part = np.partition(np.maximum(d2, 0.0), k - 1, axis=1)[:, :k]
            out[a:a + 512] = np.sqrt(part).mean(axis=1)
        return out * np.sqrt(F.shape[1] / measured)  # a partial spectrum is not closer for lacking features

    def score(self, F: np.ndarray) -> np.ndarray:
        """Distance relative to a typical held-out spectrum's (1 = typical)."""
        return self.distance(F) / self.typical

    def far_limit(self, coverage: np.ndarray) -> np.ndarray:
        """The score above which a spectrum of each ``coverage`` fraction is flagged (the first
        test, and the CN maps' strata)."""
        return _by_band(self.far_limits, coverage, self.threshold)

    def spread_limit(self, coverage: np.ndarray) -> np.ndarray:
        """The trees' spread (A) above which a spectrum of each ``coverage`` fraction is flagged."""
        return _by_band(self.spread_limits, coverage, np.inf)

    def flags(self, score: np.ndarray, spread: np.ndarray | None, coverage: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The flag: (out of domain, distance beyond its limit, trees' spread beyond its limit) per row.

        Each test is measured as a ratio to its limit for the row's coverage, the score to
        :meth:`far_limit` (``r_far``) and the distance trees' ``spread`` (A) to :meth:`spread_limit`
        (``r_spread``). Without joint limits (bundles before format 11) a spectrum is out of domain
        where either ratio exceeds 1. With them, where either ratio alone exceeds ``alone_limits``
        or their geometric mean ``sqrt(r_far r_spread)`` exceeds ``joint_limits``: a spectrum near
        both limits at once is as rare in family as one beyond either (:func:`joint_flag_limits`),
        and what another code changes shows in both a little (Cu FEFF10 -> OmniXAS FEFF 9, session
        46: 0.82 of the large distance errors flagged with the limits set to flag 8 % in family,
        0.86 at 10 %, against 0.76 with each test alone; in-family whole spectra 0.08, 0.09, 0.09;
        docs/models.md). The second and third returned arrays stay each test against its own
        limit: the CN maps' strata, and the reasons :func:`domain_words` gives."""
        coverage = np.asarray(coverage, float)
        r_far = np.asarray(score, float) / self.far_limit(coverage)
        r_spread = np.zeros(len(r_far)) if spread is None else self.spread_ratio(spread, coverage)
        return self.flags_from_ratios(r_far, r_spread, coverage), r_far > 1.0, r_spread > 1.0

    def spread_ratio(self, spread: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """The distance trees' ``spread`` (A) over :meth:`spread_limit` (0 where there is none)."""
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero limit: any spread is beyond it
            return np.nan_to_num(np.asarray(spread, float) / self.spread_limit(coverage), nan=0.0)

    def flags_from_ratios(self, r_far: np.ndarray, r_spread: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """Out of domain, from each test's ratio to its limit (:meth:`flags`)."""
        if self.joint_limits is None:
            return (r_far > 1.0) | (r_spread > 1.0)
        either, both = _alone_and_joint(r_far, r_spread)
        return (either > _by_band(self.alone_limits, coverage, 1.0)) \
            | (both > _by_band(self.joint_limits, coverage, np.inf))

    def to_arrays(self, prefix: str = "domain__") -> dict[str, np.ndarray]:
        return {f"{prefix}center": self.center, f"{prefix}scale": self.scale, f"{prefix}reference": self.reference}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], typical: float, threshold: float,
                    prefix: str = "domain__") -> DomainModel:
        return cls(center=arrays[f"{prefix}center"], scale=arrays[f"{prefix}scale"],
                   reference=arrays[f"{prefix}reference"], typical=typical, threshold=threshold)


def domain_words(rec: dict[str, Any]) -> str:
    """The domain flag for people, from a prediction (or record) with ``in_domain``,
    ``domain_score`` and, where known, ``domain_far`` / ``domain_trees_disagree``
    (:meth:`~xanes_agent.models.model.ElementModel.calibrate`)."""
    score = f"score {float(rec['domain_score']):.2f}"
    if rec.get("in_domain", True):
        return f"in domain ({score})"
    why = [w for w, on in (("unlike the training spectra", rec.get("domain_far", True)),
                           ("the distance trees disagree", rec.get("domain_trees_disagree", False))) if on]
    # neither beyond its own limit: the two tests together (DomainModel.flags)
    why = why or ["near the edge of the training spectra where the distance trees disagree"]
    return f"OUT OF DOMAIN ({score}: {'; '.join(why)})"


def _by_band(limits: np.ndarray | None, coverage: np.ndarray, without: float) -> np.ndarray:
    """Each ``coverage`` fraction's entry of per-band ``limits``; ``without`` everywhere when None."""
    if limits is None:
        return np.full(np.shape(coverage), without)
    return np.asarray(limits, float)[coverage_band(coverage)]


def check_band_limits(limits: Any, name: str) -> np.ndarray:
    """A bundle's per-coverage-band limits ``name`` (JSON: numbers >= 0, None for no limit), validated."""
    if not isinstance(limits, list) or len(limits) != len(COVERAGE_EDGES) - 1:
        raise ValueError(f"{name} must be a list of {len(COVERAGE_EDGES) - 1} per coverage band")
    out = np.array([np.inf if x is None else x for x in limits], dtype=float)
    if np.any(np.isnan(out)) or np.any(out < 0):
        raise ValueError(f"{name} must be numbers >= 0 (or null for no limit)")
    return out


def _band_list(limits: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in limits]  # None: no limit


def per_band_limits(values: np.ndarray, coverage: np.ndarray, quantile: float, min_rows: int = 20) -> np.ndarray:
    """Per coverage band, the conformal ``quantile`` of in-family ``values`` (a domain test's
    score or the trees' spread of spectra whose siblings trained): a spectrum beyond it is
    flagged. A band with fewer than ``min_rows`` finite values gets no limit (inf)."""
    band = coverage_band(coverage)
    out = np.full(len(COVERAGE_EDGES) - 1, np.inf)
    for b in range(len(out)):
        s = np.asarray(values, float)[band == b]
        if np.isfinite(s).sum() >= min_rows:
            out[b] = conformal_quantile(s, quantile)
    return out


def _alone_and_joint(r_far: np.ndarray, r_spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two statistics of the flag (:meth:`DomainModel.flags`) from each test's ratio to its
    limit: the larger ratio (either test alone) and their geometric mean (the two together)."""
    return np.maximum(r_far, r_spread), np.sqrt(np.maximum(r_far, 0.0) * r_spread)


#: Either test alone flags a spectrum beyond this quantile of its in-family ratio to its limit
#: (:func:`joint_flag_limits`); the rest of the allowance goes to the two together.
ALONE_QUANTILE = 0.99


def joint_flag_limits(r_far: np.ndarray, r_spread: np.ndarray, coverage: np.ndarray, cap: float,
                      alone_quantile: float = ALONE_QUANTILE, min_rows: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per coverage band, the limits of :meth:`DomainModel.flags` from in-family held-out spectra:
    ``r_far`` and ``r_spread``, each test's ratio to its own limit. Either ratio alone beyond its
    ``alone_quantile`` of the band (the largest of the two's); then the geometric mean of the two
    is given the rest of the ``cap``: its limit is set so that at most ``cap`` of the band's rows
    are flagged by the three. A band of fewer than ``min_rows`` rows keeps the tests alone (1, inf).

    Why: at their 95 % quantiles each test alone flags its 5 % of in-family spectra, and few of them
    are spectra another code or a new structure gets wrong; what those change shows a little in
    both (Cu FEFF10 -> FEFF 9: the large distance errors the two tests missed lay at a median 0.83
    of each limit, session 46)."""
    band = coverage_band(coverage)
    r_far = np.asarray(r_far, float)
    either, both = _alone_and_joint(r_far, np.nan_to_num(np.asarray(r_spread, float), nan=0.0))
    alone = np.ones(len(COVERAGE_EDGES) - 1)
    joint = np.full(len(alone), np.inf)
    for b in range(len(alone)):
        rows = (band == b) & np.isfinite(r_far)
        if rows.sum() < min_rows:
            continue
        alone[b] = conformal_quantile(either[rows], alone_quantile)
        flagged = either[rows] > alone[b]
        # spectra the joint test may add; the 1e-9 because 2 x (1 - 0.95) is 0.0999...98 in floating point
        room = int(np.floor(cap * rows.sum() + 1e-9)) - int(flagged.sum())
        rest = np.sort(both[rows][~flagged])[::-1]  # largest first
        if room >= 0 and len(rest):
            joint[b] = rest[min(room, len(rest) - 1)]  # at most ``room`` of them lie above it
    return alone, joint


#: The trees' spread is floored at this share of its mean over the calibration spectra in the
#: interval scale (:func:`difficulty`): where every tree agrees exactly (Ti's oxidation state is 4 in
#: 28 % of held-out spectra, session 46) an interval must not shrink to nothing.
SPREAD_FLOOR_SHARE = 0.25


def difficulty(domain_score: np.ndarray, spread: np.ndarray | None = None, floor: float | None = None
               ) -> np.ndarray:
    """sigma(x) of the interval, growing with the domain score: with the property's trees'
    ``spread`` and its ``floor`` (bundle format 11), ``(spread + floor) x domain score`` in the
    property's unit; else (bundles before it) ``0.5 + 0.5 x domain score``, 1 for a typical spectrum.

    Why the spread (session 46): the domain score says how far a spectrum lies from the training
    spectra, not whether their labels agree there; the trees' spread does. With structure types
    held out (Cu, Ti), the 68 % intervals were 8-66 % narrower at the same or closer coverage
    (Cu charge label 0.75 -> 0.70 of parents, Ti distance 0.85 -> 0.79; docs/models.md)."""
    score = np.asarray(domain_score, float)
    if spread is None or floor is None:
        return 0.5 + 0.5 * score
    return (np.nan_to_num(np.asarray(spread, float), nan=0.0) + floor) * score


def spread_floor(spread: np.ndarray) -> float:
    """The floor of :func:`difficulty` from calibration spectra's trees' spreads (1 where all are 0)."""
    s = np.asarray(spread, float)
    m = float(np.mean(s[np.isfinite(s)])) if np.isfinite(s).any() else 0.0
    return SPREAD_FLOOR_SHARE * m if m > 0 else 1.0


IDENTITY_KNOTS: tuple[list[float], list[float]] = ([0.0, 1.0], [0.0, 1.0])  # the forests' own probability


def across_codes_confidence_map(proba: np.ndarray, y_index: np.ndarray, groups: np.ndarray, folds: np.ndarray
                                ) -> tuple[tuple[list[float], list[float]], dict[str, Any]]:
    """The CN confidence map for another code's spectra of held-out parents (``proba`` from the
    calibration's fold models, ``folds`` the fold of each row), each parent weighing 1: an isotonic
    map where it lowers the ECE on folds it was not fitted on (:func:`map_ece_across_folds`), else
    the forests' own probability (:data:`IDENTITY_KNOTS`). Returns the knots and what was measured.

    Why a map of its own: the same-code map learns how often forests are right on new structures
    computed by the same code, and another code's spectra are right less often at the same
    confidence (Cu FEFF10 -> FEFF 9, session 20: the same-code map stated ECE 0.064 there against
    the forests' own 0.022)."""
    w = group_weights(groups, len(groups))
    info: dict[str, Any] = {"n": int(len(proba)), "accuracy": float(np.mean(np.argmax(proba, axis=1) == y_index)),
                            "ece_forests": expected_calibration_error(proba, y_index, weights=w)}
    knots = fit_confidence_map(proba, y_index, w)
    info["rule"] = "isotonic map"
    if len(np.unique(folds)) >= 2:
        raw, mapped = map_ece_across_folds(proba, y_index, folds, w)
        info["ece_unseen_folds"] = {"forests": raw, "map": mapped}
        if mapped >= raw:
            knots = IDENTITY_KNOTS
            info["rule"] = "the forests' own (a map did not lower the ECE on folds it was not fitted on)"
    return knots, info


@dataclass
class Calibration:
    """What :func:`fit_calibration` learned; JSON-safe except the domain model's arrays."""

    confidence_knots: tuple[list[float], list[float]] = ([0.0, 1.0], [0.0, 1.0])  # identity
    # the map for spectra flagged out of domain, where forests are right less often (None: the one map)
    confidence_knots_far: tuple[list[float], list[float]] | None = None
    quantiles: dict[str, list[list[float]]] = field(default_factory=dict)  # prop -> [band][level]
    # prop -> [band][level]: for spectra in the domain, the quantiles for a new parent structure
    # from the calibration spectra in the domain (``quantiles`` then holds for a flagged spectrum:
    # the larger of those for a new parent and for a new type, from the flagged calibration
    # spectra); empty: ``quantiles`` for every spectrum, as bundles before format 12
    quantiles_in_domain: dict[str, list[list[float]]] = field(default_factory=dict)
    # prop -> per band {"edges", "quantiles"}: for spectra in the domain, the new-parent quantiles per
    # bin of the interval scale (:func:`scale_bin_quantiles`; empty: ``quantiles_in_domain`` for
    # every spectrum in the domain, as bundles before format 13)
    scale_bins: dict[str, list[dict[str, list]]] = field(default_factory=dict)
    domain: DomainModel | None = None
    method: dict[str, Any] = field(default_factory=dict)
    # prop -> the floor of its trees' spread in the interval scale (:func:`difficulty`; empty: the
    # scale of bundles before format 11, the domain score alone)
    spread_floors: dict[str, float] = field(default_factory=dict)
    # prop -> [band][level] conformal quantiles of another code's held-out spectra
    across_codes: dict[str, list[list[float]]] = field(default_factory=dict)
    # the CN map for another code's spectra (None: not calibrated across codes; the same-code maps)
    confidence_knots_across: tuple[list[float], list[float]] | None = None

    def meta(self) -> dict[str, Any]:
        return {"confidence_knots": [list(self.confidence_knots[0]), list(self.confidence_knots[1])],
                **({"confidence_knots_out_of_domain": [list(k) for k in self.confidence_knots_far]}
                   if self.confidence_knots_far is not None else {}),
                "quantiles": self.quantiles, "levels": list(LEVELS),
                **({"quantiles_in_domain": self.quantiles_in_domain} if self.quantiles_in_domain else {}),
                **({"quantiles_in_domain_by_scale": self.scale_bins} if self.scale_bins else {}),
                **({"quantiles_across_codes": self.across_codes} if self.across_codes else {}),
                **({"interval_spread_floors": self.spread_floors} if self.spread_floors else {}),
                **({"confidence_knots_across_codes": [list(k) for k in self.confidence_knots_across]}
                   if self.confidence_knots_across is not None else {}),
                "coverage_edges": list(COVERAGE_EDGES[:-1]) + [1.0],
                "domain_typical": self.domain.typical if self.domain else None,
                **({"domain_featurization": self.domain.featurization}
                   if self.domain is not None and self.domain.featurization else {}),
                "domain_threshold": self.domain.threshold if self.domain else None,
                **({"domain_far_limits": _band_list(self.domain.far_limits)}
                   if self.domain is not None and self.domain.far_limits is not None else {}),
                **({"domain_spread_limits": _band_list(self.domain.spread_limits),
                    "domain_spread_property": self.domain.spread_property}
                   if self.domain is not None and self.domain.spread_limits is not None else {}),
                **({"domain_alone_limits": _band_list(self.domain.alone_limits),
                    "domain_joint_limits": _band_list(self.domain.joint_limits)}
                   if self.domain is not None and self.domain.joint_limits is not None else {}),
                "method": self.method}

    def halfwidths(self, prop: str, domain_score: np.ndarray, coverage: np.ndarray,
                   across_codes: bool = False, spread: np.ndarray | None = None,
                   in_domain: np.ndarray | None = None) -> np.ndarray:
        """(rows, levels) interval half-widths in the property's unit; ``across_codes`` for a
        spectrum from another code or a measurement, where that calibration exists; ``spread``: the
        property's trees' spread, where the bundle's scale has it (:func:`difficulty`);
        ``in_domain``: the domain flag's verdict per row (:meth:`DomainModel.flags`), where the
        bundle has quantiles for spectra in the domain (None: every row as if flagged); those in the
        domain take their bin of the scale where the bundle has them (:func:`scale_bin_quantiles`)."""
        band = coverage_band(coverage)
        floor = self.spread_floors.get(prop)
        if floor is not None and spread is None:
            raise ValueError(f"{prop}: this calibration's intervals scale with the trees' spread; none given")
        sigma = difficulty(domain_score, spread, floor)
        across = across_codes and prop in self.across_codes
        q = np.asarray((self.across_codes if across else self.quantiles)[prop], float)[band]  # (rows, levels)
        if not across and in_domain is not None and prop in self.quantiles_in_domain:
            inside = np.asarray(in_domain, bool)
            q[inside] = np.asarray(self.quantiles_in_domain[prop], float)[band[inside]]
            if prop in self.scale_bins:
                for b, entry in enumerate(self.scale_bins[prop]):
                    rows = np.flatnonzero(inside & (band == b))
                    q[rows] = np.asarray(entry["quantiles"], float)[scale_bin_index(entry["edges"], sigma[rows])]
        return q * sigma[:, None]


def fit_calibration(y: dict[str, np.ndarray], pred: dict[str, np.ndarray], cn_proba: np.ndarray | None,
                    cn_classes: np.ndarray | None, domain_score: np.ndarray, coverage: np.ndarray,
                    full: np.ndarray, domain: DomainModel, method: dict[str, Any],
                    groups: np.ndarray | None = None, cn_map: str = "single",
                    folds: np.ndarray | None = None, types: np.ndarray | None = None,
                    spread: dict[str, np.ndarray] | None = None, flagged: np.ndarray | None = None) -> Calibration:
    """Calibrate from out-of-group predictions.

    ``y``/``pred``: per regression property, labels and predictions of held-out rows (full spectra
    and masked copies); ``cn_proba`` (rows, classes) and ``y['coordination_number']`` for the
    classifier; ``domain_score`` and ``coverage`` per row; ``full``: rows that are whole spectra.
    ``domain`` is the final model's domain model, its limits set: the CN maps' strata are its
    first test (:meth:`DomainModel.far_limit`). ``groups``: the parent
    structure of each row; given, the interval quantiles are those for a new parent
    (:func:`group_conformal_quantile`), else for a new spectrum (:func:`conformal_quantile`);
    the CN map then weighs each parent once too. ``cn_map="domain"`` fits one CN map for
    in-domain and one for out-of-domain spectra (each needs :data:`MIN_STRATUM` rows).
    ``types``: each row's structure type (with ``groups``): the intervals then hold for a new
    structure type as well (:func:`band_quantiles`).
    ``spread``: per regression property, the fold models' trees' spread of each row; given, the
    intervals scale with it (:func:`difficulty`, its floor from the whole spectra's spreads).
    ``flagged``: each row out of domain by the final domain model's flag (with ``groups`` and
    ``types``): the quantiles are then fitted on each side of the flag (Mondrian), for a new parent
    on the rows in the domain (``quantiles_in_domain``) and for a new parent or a new type on the
    flagged rows (``quantiles``); a side of fewer than :data:`MIN_STRATUM` rows takes every row.
    The in-domain side's quantiles are then also fitted per bin of the interval scale
    (``scale_bins``: :func:`scale_bin_quantiles`), which the intervals in the domain use.
    ``folds``: the calibration fold of each row; given, the CN map is kept only where it lowers the
    ECE on folds it was not fitted on (:func:`map_ece_across_folds`, recorded in the method), else
    the forests' own probability is reported.
    """
    cal = Calibration(domain=domain, method=method)
    band = coverage_band(coverage)
    for prop, yy in y.items():
        if prop == "coordination_number" or prop not in pred:
            continue
        sigma = difficulty(domain_score)
        if spread is not None and prop in spread:
            cal.spread_floors[prop] = spread_floor(np.asarray(spread[prop])[full])
            sigma = difficulty(domain_score, spread[prop], cal.spread_floors[prop])
        ok = np.isfinite(yy) & np.isfinite(pred[prop])
        scores = np.where(ok, np.abs(yy - pred[prop]) / sigma, np.nan)
        if flagged is None or types is None or groups is None:
            cal.quantiles[prop] = band_quantiles(scores, band, groups, types)
            continue
        out = np.asarray(flagged, bool)
        side = {k: np.where(sel, scores, np.nan) if (ok & sel).sum() >= MIN_STRATUM else scores
                for k, sel in (("in", ~out), ("out", out))}
        cal.quantiles_in_domain[prop] = band_quantiles(side["in"], band, groups)
        cal.scale_bins[prop] = scale_bin_quantiles(side["in"], sigma, band, groups)
        cal.quantiles[prop] = band_quantiles(side["out"], band, groups, types)
    if cn_proba is not None and "coordination_number" in y:
        yc = y["coordination_number"]
        ok = np.isin(yc, cn_classes) & np.all(np.isfinite(cn_proba), axis=1)
        if ok.sum() >= 10:
            idx = np.searchsorted(cn_classes, yc[ok]).astype(int)
            w = None if groups is None else group_weights(np.asarray(groups)[ok], int(ok.sum()))
            cal.confidence_knots = fit_confidence_map(cn_proba[ok], idx, w)
            cal.method["cn_ece_out_of_group_raw"] = expected_calibration_error(cn_proba[ok], idx)
            cal.method["cn_accuracy_out_of_group"] = float(np.mean(np.argmax(cn_proba[ok], axis=1) == idx))
            far = np.asarray(domain_score)[ok] > domain.far_limit(np.asarray(coverage)[ok])
            if cn_map == "domain" and far.sum() >= MIN_STRATUM and (~far).sum() >= MIN_STRATUM:
                # out-of-domain spectra are right less often at the same forest confidence: a map each
                near = ~far
                cal.confidence_knots = fit_confidence_map(cn_proba[ok][near], idx[near],
                                                          None if w is None else w[near])
                cal.confidence_knots_far = fit_confidence_map(cn_proba[ok][far], idx[far],
                                                              None if w is None else w[far])
                cal.method["cn_accuracy_out_of_group_far"] = float(np.mean(np.argmax(cn_proba[ok][far], axis=1)
                                                                           == idx[far]))
            if folds is not None and len(np.unique(np.asarray(folds)[ok])) >= 2:
                raw, mapped = map_ece_across_folds(cn_proba[ok], idx, np.asarray(folds)[ok], w)
                cal.method["cn_ece_unseen_folds"] = {"forests": raw, "map": mapped}
                if mapped >= raw:  # the map does not carry over to structures it has not seen
                    cal.confidence_knots, cal.confidence_knots_far = ([0.0, 1.0], [0.0, 1.0]), None
                    cal.method["cn_probability"] = (
                        f"the forests' own: an isotonic map fitted on the other calibration folds stated "
                        f"ECE {mapped:.3f} on each fold's parents against the forests' {raw:.3f}")
    return cal
