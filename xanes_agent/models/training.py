"""Training per element: data preparation, partial-coverage augmentation, the seed ensembles, metrics.

Splits: the library's fixed held-out rows (``split == "test"``, 10 % of materials) are the test set
and are never used for training or tuning; the other rows train. A user collection without a
``test`` split gets a seeded 90/10 split by material. The domain flag's limits on the trees' spread
are set on in-family held-out spectra by cross-fitting over the training materials
(:func:`fit_spread_limits`); until session 35 a ninth of the training materials was kept out of
training for that (about 100 spectra per element, too few: Ni's limits from them flagged 0.19 of its
test split).

Measurement realism (``noise``, ``e0_jitter``; off by default, as in the study's noise-free
setting): each training spectrum is joined by a copy with Gaussian noise (sigma drawn
log-uniformly in ``noise``, in units of the normalized edge step) and E0 moved by up to
``e0_jitter`` eV, before the masking below. Forests trained so no longer split on features that
counting noise moves (e.g. the cubic coefficients of 2.5 eV chunks), so a live prediction does not
jump with each noise draw. :func:`live_config` is the preset the agent's models use: that
augmentation plus ``min_samples_leaf=5`` (smoother trees with ~3x fewer nodes: faster live updates,
``benchmarks/agent_latency.py --min-samples-leaf 5``).

Features (session 34): the grid values (``pointwise``), in a committee of two views
(:data:`EDGE_VIEWS`): half the seeds' forests see the whole window, half only the pre-edge and
the edge, E0 - 15 to E0 + 8 eV. A left-out structure type (a prototype family, its hosts out of
training too) is filed by the region above the edge, where the medium-range order of its lattice
shows, with the training structures that share that order, whatever its coordination; the pre-edge
and the edge are set by the first shell. Forests on the grid values up to E0 + 3 eV called Mn's
left-out square pyramids five-coordinate (55 of 55; up to E0 + 8 eV 43 of 55) where forests on the
multiscale polynomial features called them six (54 of 55). With the vote at 0.25
(:mod:`.neighbours`) the committee lifted CN balanced accuracy with each family's structure type
left out (hosts in training) from 0.744 to 0.777 mean over Ti..Cu and parents left out from 0.848
to 0.868 (``benchmarks/transfer.py``, docs/models.md). The domain score keeps the polynomial
features (:data:`~.calibration.DOMAIN_FEATURIZATION`).

Partial coverage: every training spectrum is joined by ``augment_copies`` masked copies, alternating
a contiguous window from the low-energy side (10-100 % of the grid) and 1-3 random missing
chunks (5-30 grid points each), so the forests learn where NaN goes and stay accurate on the
partial spectra the live agent sees.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, r2_score

from ..data.collection import SpectrumCollection
from ..foundation.properties import CHARGE, CHARGE_LABELS, CN, DISTANCE, FEFF_CHARGE
from .calibration import (
    ALONE_QUANTILE,
    DOMAIN_FEATURIZATION,
    DOMAIN_QUANTILE,
    SPREAD_FLOOR_SHARE,
    Calibration,
    DomainModel,
    coverage_band,
    joint_flag_limits,
    per_band_limits,
    valid_domain_quantile,
)
from .ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor
from .features import (
    DEFAULT_FEATURIZATION,
    DEFAULT_GRID,
    EDGE_VIEWS,
    Grid,
    make_featurizer,
    spectra_to_grid,
    view_columns,
)
from .model import ElementModel, PropertyModel
from .neighbours import MAX_BLUR, VOTE_BLUR, VOTE_SHARE, NeighbourVote, valid_blur
from .packed import PackedForests, tree_std

log = logging.getLogger(__name__)

CN_CLASSES = (4, 5, 6)
#: A CN class must come from at least this many parent structures for its probability to be calibrated.
MIN_CLASS_PARENTS = 5
#: Labelled training spectra a property needs (10 unless named): the FEFF charge transfer is carried
#: by a fraction of the spectra only, and its out-of-parent calibration needs labelled spectra in
#: every fold.
MIN_LABELLED = {FEFF_CHARGE: 50}


def charge_label(coll: SpectrumCollection, exclude: tuple[str, ...] = ()) -> str:
    """The charge-like label the data really carry: Bader charge, else FEFF charge transfer, else
    the formal oxidation state (named as what it is); never one in ``exclude`` (a label with a
    model of its own)."""
    for name, need in zip(CHARGE_LABELS, (0.5, 0.8, 0.0)):
        if name in exclude:
            continue
        v = coll.labels[name]
        if len(v) and np.isfinite(v).mean() > need:
            return name
    return "oxidation_state"


@dataclass
class TrainConfig:
    featurization: str = DEFAULT_FEATURIZATION
    normalization: str = "post_edge"
    n_seeds: int = 10
    n_estimators: int = 100
    max_features_classifier: Any = "sqrt"
    max_features_regressor: Any = 1 / 3
    min_samples_leaf: int = 1
    split_seed: int = 0
    augment_copies: int = 2
    noise: tuple[float, float] = (0.0, 0.0)
    e0_jitter: float = 0.0
    oversample: bool = True
    n_jobs: int | None = None
    grid: Grid = field(default_factory=lambda: DEFAULT_GRID)
    properties: tuple[str, ...] = (CN, DISTANCE, CHARGE, FEFF_CHARGE)
    # out-of-group calibration (models.calibration): folds by parent structure, seeds per fold model
    calibration_folds: int = 5
    calibration_seeds: int = 2
    # what the interval's coverage is for: a spectrum of a new "parent" structure (each held-out
    # parent weighs 1) or a new "spectrum" (each held-out spectrum weighs 1)
    interval_unit: str = "parent"
    # CN probability map: "domain" (one isotonic map each for in- and out-of-domain spectra) or
    # "single" (one map); benchmarks/calibration.py measured both (docs/models.md)
    cn_map: str = "domain"
    # experiment-like copies per training spectrum (models.realism: broadening, E0, normalization, noise)
    # for every property; the model is then calibrated for experiment-like spectra
    realism_copies: int = 0
    # the regressors (distance, charges): extremely randomized trees ("extra"; or "random" forests),
    # with experiment-like copies of each training spectrum joined to their rows. Together they cut
    # the errors on new parent structures and on structure types left out by a seventh to a sixth,
    # while the CN classifier loses with either out of family (benchmarks/transfer.py, session
    # 36), so it keeps random forests on the spectra as they are. The spectra the model is
    # calibrated for are unchanged.
    regressor_trees: str = "extra"
    regressor_copies: int = 1
    # a spectrum is flagged out of domain beyond this quantile of the training spectra's
    # distance to other materials (models.calibration), so about 1 - it of in-family spectra are flagged
    domain_quantile: float = DOMAIN_QUANTILE
    # the nearest-neighbour vote's share of the CN probability (models.neighbours; 0: forests alone)
    neighbour_vote: float = VOTE_SHARE
    # the Gaussian FWHM (eV) the vote blurs spectra by before comparing them (models.neighbours)
    vote_blur: float = VOTE_BLUR
    # the CN classifier's committee of views: its seeds' forests cycle through these energy windows
    # (eV relative to E0), each seeing only the features within its window (models.ensemble,
    # features.view_columns); empty: every forest sees every feature (the regressors always do).
    # n_seeds >= the number of views; a calibration fold model takes one seed per view at least
    views: tuple[tuple[float, float], ...] = EDGE_VIEWS

    def __post_init__(self) -> None:
        if not valid_domain_quantile(self.domain_quantile):
            raise ValueError(f"domain_quantile {self.domain_quantile!r}: a quantile in [0.5, 1)")
        if not 0.0 <= self.neighbour_vote <= 1.0:
            raise ValueError(f"neighbour_vote {self.neighbour_vote!r}: a share in [0, 1]")
        if not valid_blur(self.vote_blur):
            raise ValueError(f"vote_blur {self.vote_blur!r}: eV from 0 to {MAX_BLUR:g}")
        self.views = tuple((float(lo), float(hi)) for lo, hi in self.views)
        if self.regressor_trees not in SeedEnsembleRegressor._FORESTS:
            kinds = ", ".join(SeedEnsembleRegressor._FORESTS)
            raise ValueError(f"regressor_trees {self.regressor_trees!r}: one of {kinds}")
        if self.views and self.n_seeds < len(self.views):
            raise ValueError(f"{len(self.views)} views need at least as many seeds, got n_seeds {self.n_seeds}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"] = self.grid.as_dict()
        return d


def live_config(**overrides: Any) -> TrainConfig:
    """The preset for models the live agent uses on measured (noisy) spectra; see module docstring."""
    return TrainConfig(**{"noise": (5e-4, 5e-3), "e0_jitter": 0.5, "min_samples_leaf": 5, **overrides})


def mask_low_window(X: np.ndarray, fraction: float) -> np.ndarray:
    """Keep only the first ``fraction`` of the grid (a scan that has reached that far)."""
    out = X.copy()
    out[:, max(1, int(round(fraction * X.shape[1]))):] = np.nan
    return out


#: Low windows of the model grid the calibration scores partial spectra on (fractions measured).
CALIBRATION_WINDOWS = (0.3, 0.5, 0.75)


def with_low_windows(X: np.ndarray) -> list[np.ndarray]:
    """``X`` whole, then masked to each of :data:`CALIBRATION_WINDOWS` (each block aligned with ``X``)."""
    return [X] + [mask_low_window(X, frac) for frac in CALIBRATION_WINDOWS]


def augment(X: np.ndarray, copies: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Masked copies of grid spectra; returns (stacked X, index of the source row of each)."""
    n, g = X.shape
    parts, src = [X], [np.arange(n)]
    for c in range(copies):
        M = X.copy()
        if c % 2 == 0:
            keep = rng.integers(max(2, g // 10), g + 1, size=n)
            M[np.arange(g)[None, :] >= keep[:, None]] = np.nan
        else:
            for i in range(n):
                for _ in range(rng.integers(1, 4)):
                    w = rng.integers(5, 31)
                    s = rng.integers(0, g - w + 1)
                    M[i, s:s + w] = np.nan
        parts.append(M)
        src.append(np.arange(n))
    return np.vstack(parts), np.concatenate(src)


def measurement_copies(X: np.ndarray, grid: Grid, noise: tuple[float, float], e0_jitter: float,
                       rng: np.random.Generator) -> np.ndarray:
    """``X`` (normalized grid spectra) as a measurement would give them: E0 off by up to
    ``e0_jitter`` eV (uniform) and Gaussian noise with a per-spectrum sigma drawn log-uniformly in
    ``noise`` (units of the normalized edge step). Rows stay aligned with ``X``."""
    n = len(X)
    out = X.copy()
    if e0_jitter > 0:
        shift = rng.uniform(-e0_jitter, e0_jitter, size=n)
        g = grid.energies
        for i in range(n):
            ok = np.isfinite(X[i])
            if ok.sum() > 1:
                out[i] = np.interp(g + shift[i], g[ok], X[i, ok], left=np.nan, right=np.nan)
    lo, hi = noise
    if hi > 0:
        sigma = np.exp(rng.uniform(np.log(max(lo, 1e-6)), np.log(hi), size=n))
        out = out + rng.normal(size=out.shape) * sigma[:, None]
    return out


def assign_splits(coll: SpectrumCollection, seed: int) -> np.ndarray:
    """'train' / 'test' per row (see module docstring)."""
    if np.any(coll.split == "test"):
        return np.where(coll.split == "test", "test", "train").astype(str)
    mats = np.unique(coll.material_id)
    test_m = mats[np.random.default_rng(seed).permutation(len(mats))[: max(1, len(mats) // 10)]]
    return np.where(np.isin(coll.material_id, test_m), "test", "train").astype(str)


def data_hash(coll: SpectrumCollection) -> str:
    h = hashlib.sha256()
    for i in range(len(coll)):
        h.update(coll.ids[i].encode())
        h.update(np.asarray(coll.energy[i], np.float32).tobytes())
        h.update(np.asarray(coll.mu[i], np.float32).tobytes())
    for k in sorted(coll.labels):
        h.update(np.asarray(coll.labels[k], np.float32).tobytes())
    return h.hexdigest()


def train_element(coll: SpectrumCollection, element: str, config: TrainConfig | None = None,
                  progress: bool = True, train_mask: np.ndarray | None = None,
                  other: SpectrumCollection | None = None) -> ElementModel:
    """Train all properties of one absorbing element; metrics on the held-out test rows.

    ``train_mask`` (rows of ``coll.where(element=element)``) replaces the library's split: those
    rows train, the others are the test rows (for evaluations that hold out whole groups).
    ``other``: spectra of the element from another code (e.g. the OmniXAS FEFF 9 set beside FEFF10
    training spectra); they never train, they calibrate the intervals across codes
    (:mod:`.calibration`).
    """
    from tqdm import tqdm

    from ..data.library import parent_groups

    cfg = config or TrainConfig()
    sub = coll.where(element=element)
    if len(sub) < 20:
        raise ValueError(f"only {len(sub)} spectra for {element}: need at least 20 to train")
    featurizer = make_featurizer(cfg.featurization, cfg.grid)
    X_grid, e0 = spectra_to_grid(sub.energy, sub.mu, cfg.grid, cfg.normalization)
    good = np.isfinite(e0) & (np.isfinite(X_grid).mean(axis=1) > 0.9)
    splits = assign_splits(sub, cfg.split_seed) if train_mask is None else \
        np.where(np.asarray(train_mask, bool), "train", "test")
    rng = np.random.default_rng(cfg.split_seed)
    real = ExperimentLike.make(sub, np.flatnonzero(good), cfg.realism_copies, cfg, rng)
    # the regressors' copies draw on a stream of their own: the CN classifier trains as without them
    extra = real or ExperimentLike.make(sub, np.flatnonzero(good), cfg.regressor_copies, cfg,
                                        np.random.default_rng(cfg.split_seed + 11))
    charge = charge_label(sub, exclude=(FEFF_CHARGE,) if FEFF_CHARGE in cfg.properties else ())
    targets = {CN: CN, DISTANCE: DISTANCE, CHARGE: charge, FEFF_CHARGE: FEFF_CHARGE}
    props: dict[str, PropertyModel] = {}
    vote = None
    parents = parent_groups(sub)  # the vote's voters: each parent structure once per CN
    bar = tqdm([p for p in cfg.properties], desc=f"{element} models", disable=not progress)
    for prop in bar:
        label = targets[prop]
        y_all = sub.labels[label]
        ok = good & np.isfinite(y_all)
        if prop == CN:
            ok &= np.isin(y_all, CN_CLASSES)
        tr = ok & (splits == "train")
        te = ok & (splits == "test")
        if tr.sum() < MIN_LABELLED.get(prop, 10) or (prop == CN and len(np.unique(y_all[tr])) < 2):
            log.warning("%s %s: too few labelled training spectra (%d); property skipped", element, label, tr.sum())
            continue
        Xtr, ytr = _training_rows(X_grid, np.flatnonzero(tr), y_all, _copies_for(prop, real, extra))
        est = _fit_property(Xtr, ytr, prop, cfg, featurizer, rng, cfg.n_seeds)
        pm = PropertyModel(
            name=prop, label=label, kind="classifier" if prop == CN else "regressor",
            packed=PackedForests.from_sklearn(est.estimators_, est.columns_),
            importances=est.feature_importances_, importances_std=est.feature_importances_std_,
            n_train=int(tr.sum()), n_test=int(te.sum()),
        )
        if prop == CN and cfg.neighbour_vote > 0:  # the training spectra themselves vote beside the forests
            vote = NeighbourVote.fit(X_grid[tr], y_all[tr], pm.packed.classes, cfg.neighbour_vote, rng=rng,
                                     parents=parents[tr], blur=cfg.vote_blur, grid=cfg.grid)
        pm.metrics = evaluate_property(pm, featurizer.transform(X_grid[te]), y_all[te], train_labels=y_all[tr],
                                       vote=vote if prop == CN else None, X_grid=X_grid[te]) if te.any() else {}
        props[prop] = pm
    model = ElementModel(
        element=element, edge=str(sub.edge[0]), grid=cfg.grid, normalization=cfg.normalization,
        featurization=cfg.featurization, feature_names=featurizer.feature_names_,
        energy_ranges=featurizer.energy_ranges_, properties=props, config=cfg.as_dict(),
        training_data_hash=data_hash(sub), n_spectra=len(sub),
        sources=sorted(set(sub.source.tolist())), vote=vote,
    )
    if cfg.calibration_folds >= 2 and props:
        model.calibration = calibrate_element(sub, X_grid, good & (splits == "train"),
                                              {p: sub.labels[targets[p]] for p in props}, cfg, featurizer,
                                              progress=progress, real=real, extra=extra,
                                              label_names={p: targets[p] for p in props},
                                              other=None if other is None else other.where(element=element),
                                              flag_rng=rng)
    model.coverage_curve = coverage_curve(model, X_grid[good & (splits == "test")], sub, good & (splits == "test"))
    return model


#: Folds by material the domain flag's spread limits are cross-fitted over (:func:`fit_spread_limits`).
SPREAD_FOLDS = 3
#: The share of the two tests' allowance the joint limits leave unspent on the cross-fitted spectra
#: (:func:`fit_spread_limits`).
JOINT_SPLIT_MARGIN = 0.02


def fit_spread_limits(dom: DomainModel, method: dict[str, Any], X_grid: np.ndarray, rows: np.ndarray,
                      y: np.ndarray, sub: SpectrumCollection, cfg: TrainConfig, featurizer: Any,
                      rng: np.random.Generator, real: ExperimentLike | None = None,
                      extra: ExperimentLike | None = None) -> None:
    """The domain flag's second test (:class:`~.calibration.DomainModel` ``dom``, the final
    model's, its distance test fitted; ``y``: the distance labels; what was done goes into the
    calibration's ``method``): per coverage band, the
    ``cfg.domain_quantile`` of the distance forest's trees' spread (A) on in-family held-out
    spectra, as the model will meet them (measurement-like or experiment-like copies,
    :func:`_as_met`), whole and masked to the calibration windows. The training ``rows`` are split
    into :data:`SPREAD_FOLDS` folds by material; a ``cfg.calibration_seeds``-seed distance forest
    trained on the other folds (as the final one is) scores each fold: every training spectrum is
    scored once by a model its siblings trained and it did not, and by the distance test of a
    domain fitted without it (:func:`fit_domain`: the final domain holds it among its reference
    spectra, and would find it nearer than a new spectrum). Set on the ~100 spectra of a ninth
    of the materials kept out of training (until session 35) the limits moved with the draw: Ni's
    flagged 0.14 of its whole test spectra, cross-fitted 0.11 (Fe partial 0.06 -> 0.095, V 0.10 ->
    0.09; the two tests' allowance is 0.10; /tmp study, docs/models.md). Where the trees disagree
    more, the answer rests on a split the training spectra do not settle: with this test the flag
    caught 0.46 of the large distance errors on new parent structures (mean over the elements), the
    distance alone 0.32 (benchmarks/calibration.py, session 31). On the same rows, each with its
    ratio to the distance test's limit (from its fold's domain), the two tests are then read
    together (:func:`~.calibration.joint_flag_limits`): the three rules of
    :meth:`~.calibration.DomainModel.flags` flag both allowances (2 x (1 -
    ``cfg.domain_quantile``)) of them per band, less :data:`JOINT_SPLIT_MARGIN`."""
    rows = rows[np.isfinite(y[rows])]
    mats = np.unique(sub.material_id[rows])
    if len(mats) < SPREAD_FOLDS:
        return
    fold_of = dict(zip(mats.tolist(), np.random.default_rng(cfg.split_seed).permutation(len(mats)) % SPREAD_FOLDS))
    fold = np.array([fold_of[m] for m in sub.material_id[rows].tolist()])
    dom_feat = make_featurizer(DOMAIN_FEATURIZATION, cfg.grid)
    spread, coverage, r_far = [], [], []
    for k in range(SPREAD_FOLDS):
        tr, held = rows[fold != k], rows[fold == k]
        est = _fit_property(*_training_rows(X_grid, tr, y, _copies_for(DISTANCE, real, extra)), DISTANCE, cfg,
                            featurizer, rng, cfg.calibration_seeds)
        X = _as_met(X_grid, held, cfg, rng, real)
        Xm = np.vstack(with_low_windows(X_grid[held] if X is None else X))
        F = featurizer.transform(Xm)
        cov = np.isfinite(Xm).mean(axis=1)
        spread.append(_trees_spread(est, F))
        coverage.append(cov)
        # the distance test as the held-out spectra would meet it: from a domain without them (the
        # final one holds them among its reference spectra, and would leave the spread more room)
        fold_domain = fit_domain(X_grid, tr, cfg, dom_feat, rng, real, sub.material_id)
        r_far.append(fold_domain.score(dom_feat.transform(Xm)) / fold_domain.far_limit(cov))
    spread, coverage, r_far = np.concatenate(spread), np.concatenate(coverage), np.concatenate(r_far)
    cap = 2 * (1 - cfg.domain_quantile)  # the two tests' allowances together
    dom.spread_property = DISTANCE
    dom.spread_limits = per_band_limits(spread, coverage, cfg.domain_quantile)
    r_spread = dom.spread_ratio(spread, coverage)
    # read together, the tests respond to a new split that lies a little farther out as a whole (the
    # Fe test fixture's partial band: 0.17 flagged with the limits set to flag 10 % here, 0.13 at
    # 8 %), so the limits leave a margin of the allowance for that (session 46)
    target = cap - JOINT_SPLIT_MARGIN
    dom.alone_limits, dom.joint_limits = joint_flag_limits(r_far, r_spread, coverage, target)
    # where the target is exact: a new in-family spectrum's share moves about it by sampling error
    flagged, band = dom.flags_from_ratios(r_far, r_spread, coverage), coverage_band(coverage)
    method["domain_flagged_cross_fitted"] = [float(flagged[band == b].mean()) if (band == b).any() else None
                                             for b in range(len(dom.spread_limits))]
    method["domain"] += (f"; and the distance forest's trees' spread against the {cfg.domain_quantile:.0%} "
                         f"quantile of {len(rows)} in-family held-out spectra's (the training spectra, "
                         f"cross-fitted over {SPREAD_FOLDS} folds by material), per coverage band; flagged "
                         f"where either test's ratio to its limit passes the {ALONE_QUANTILE:.0%} quantile of "
                         f"those spectra's, or the geometric mean of the two passes the limit at which the "
                         f"three flag {target:.0%} of them ({cap:.0%} allowed, less a margin for a new "
                         f"split's draw)")


@dataclass
class ExperimentLike:
    """Experiment-like copies (:mod:`.realism`) of an element's spectra, made once per training:
    the final model, every calibration fold and the domain scale draw on the same copies (a
    held-out spectrum's copy in a fold is one the fold's models never trained on), and the
    broadening and normalization of each copy are done once, not per fold and property."""

    X: np.ndarray  # (copies, grid points); copies that could not be normalized are left out
    src: np.ndarray  # the row each copy was made from

    @classmethod
    def make(cls, sub: SpectrumCollection, rows: np.ndarray, copies: int, cfg: TrainConfig,
             rng: np.random.Generator) -> ExperimentLike | None:
        """``copies`` of each of ``rows`` (None for none)."""
        if not copies:
            return None
        from .realism import Realism, experiment_like_grid

        Xc, src = experiment_like_grid(sub.energy, sub.mu, rows, Realism(copies=copies),
                                       cfg.grid, cfg.normalization, rng)
        keep = np.isfinite(Xc).mean(axis=1) > 0.9
        return cls(Xc[keep], src[keep])

    def of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every copy of ``rows``: (spectra, source row of each)."""
        sel = np.isin(self.src, rows)
        return self.X[sel], self.src[sel]

    def one_each(self, rows: np.ndarray, X_grid: np.ndarray) -> np.ndarray:
        """One copy of each of ``rows``, aligned with them (the clean spectrum where none was made)."""
        out = X_grid[rows].copy()
        uniq, first = np.unique(self.src, return_index=True)
        pos = np.minimum(np.searchsorted(uniq, rows), max(len(uniq) - 1, 0))
        has = (uniq[pos] == rows) if len(uniq) else np.zeros(len(rows), bool)
        out[has] = self.X[first[pos[has]]]
        return out


def _copies_for(prop: str, real: ExperimentLike | None, extra: ExperimentLike | None) -> ExperimentLike | None:
    """The experiment-like copies ``prop``'s forests train on beside their rows: the model's own
    (``real``, every property) where it has them, else the regressors' (``extra``; the CN
    classifier none)."""
    return real if prop == CN or real is not None else extra


def _training_rows(X_grid: np.ndarray, rows: np.ndarray, y: np.ndarray, real: ExperimentLike | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Grid spectra and labels of ``rows``, joined by their experiment-like copies (if any)."""
    Xtr, ytr = X_grid[rows], y[rows]
    if real is not None:
        Xc, src = real.of(rows)
        Xtr, ytr = np.vstack([Xtr, Xc]), np.concatenate([ytr, y[src]])
    return Xtr, ytr


def _fit_property(X: np.ndarray, y: np.ndarray, prop: str, cfg: TrainConfig, featurizer: Any,
                  rng: np.random.Generator, n_seeds: int) -> Any:
    """One property's seed ensemble on grid spectra ``X`` (rows of labels ``y``), with the
    configured measurement copies and masked partial-coverage copies."""
    Xtr = X
    if cfg.noise[1] > 0 or cfg.e0_jitter > 0:
        # clean rows plus noisy/shifted ones, so splits do not hinge on features that noise moves
        Xtr = np.vstack([Xtr, measurement_copies(Xtr, cfg.grid, cfg.noise, cfg.e0_jitter, rng)])
    Xa, src = augment(Xtr, cfg.augment_copies, rng)
    src = src % len(X)
    F = featurizer.transform(Xa)
    yy = y[src]
    # the committee is the classifier's: half the regressors' trees blind above the edge cost them
    # accuracy (Ti distance, parents left out, 0.016 -> 0.021 A; session 34)
    subsets = view_columns(featurizer, cfg.views, cfg.grid) if cfg.views and prop == CN else None
    if prop == CN:
        est = SeedEnsembleClassifier(n_seeds=max(n_seeds, len(subsets or ())), n_estimators=cfg.n_estimators,
                                     max_features=cfg.max_features_classifier,
                                     min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.split_seed,
                                     n_jobs=cfg.n_jobs, oversample=cfg.oversample, feature_subsets=subsets)
        return est.fit(F, yy.astype(int))
    est = SeedEnsembleRegressor(n_seeds=n_seeds, n_estimators=cfg.n_estimators, trees=cfg.regressor_trees,
                                max_features=cfg.max_features_regressor,
                                min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.split_seed, n_jobs=cfg.n_jobs)
    return est.fit(F, yy)


def calibrate_element(sub: SpectrumCollection, X_grid: np.ndarray, rows: np.ndarray,
                      labels: dict[str, np.ndarray], cfg: TrainConfig, featurizer: Any,
                      progress: bool = False, other: SpectrumCollection | None = None,
                      real: ExperimentLike | None = None, label_names: dict[str, str] | None = None,
                      extra: ExperimentLike | None = None, flag_rng: np.random.Generator | None = None
                      ) -> Calibration:
    """Out-of-group calibration of one element's models (see :mod:`.calibration`).

    The training rows are split into ``cfg.calibration_folds`` folds by parent structure; for each
    fold, ``cfg.calibration_seeds``-seed ensembles of every property (same settings and
    augmentation as the final model) are trained on the other folds and predict the held-out
    spectra, whole and masked (the low 30 %, 50 % and 75 % of the window, and 1-3 random gaps).
    With ``other`` (another code's spectra of this element), each fold's models also predict the
    other code's spectra of parents in the held-out fold (folds by parent over both sets, so no
    fold model has seen a structure it is scored on), for the intervals across codes. ``real``:
    the training's experiment-like copies (:class:`ExperimentLike`) for a model trained on them:
    the fold models train on those of their rows, and the held-out rows' copies are scored too.
    ``extra``: the copies the regressors train on beside their rows (``real`` where given).
    ``label_names``: the label of each property in ``labels`` (needed with ``other``).
    The domain flag's limits are set (:func:`fit_spread_limits`, with ``flag_rng``: the training's
    generator, so the flag does not move with how many draws the calibration folds took) before
    the intervals, which are fitted on each side of the flag.
    """
    from tqdm import tqdm

    from ..data.library import parent_groups, type_groups
    from .calibration import fit_calibration
    from .evaluation import joint_group_folds

    idx = np.flatnonzero(rows)
    dom_feat = make_featurizer(DOMAIN_FEATURIZATION, cfg.grid)  # the domain score's features
    all_parents = parent_groups(sub)
    parents = all_parents[idx]
    across = _AcrossCodes.prepare(other, label_names or {}, cfg)
    # a structure type stays in one fold: a spinel family held out while ~100 spinel hosts train
    # would calibrate intervals for structures the library already has
    types = type_groups(sub[idx])
    folds, across.folds = joint_group_folds(types, across.types, cfg.calibration_folds)
    rng = np.random.default_rng(cfg.split_seed + 7)
    y_out: dict[str, list] = {p: [] for p in labels}
    pred_out: dict[str, list] = {p: [] for p in labels if p != CN}
    spread_out: dict[str, list] = {p: [] for p in labels if p != CN}  # the fold models' trees' spread
    proba_out, dist_out, cov_out, full_out, group_out, type_out, fold_out = [], [], [], [], [], [], []
    classes = np.array(CN_CLASSES, dtype=float)
    for f in tqdm(np.unique(folds), desc="calibration folds", disable=not progress):
        tr, te = idx[folds != f], idx[folds == f]
        if not len(te) or not len(tr):
            continue
        Xte = X_grid[te]
        masked = with_low_windows(Xte) + [augment(Xte, 2, rng)[0][2 * len(te):]]
        if _measures(cfg):  # a live model meets measured spectra: calibrate on measured-like copies too
            masked.append(measurement_copies(Xte, cfg.grid, cfg.noise, cfg.e0_jitter, rng))
        if real is not None:  # trained for experiment-like spectra: its intervals must hold on them
            masked.append(real.one_each(te, X_grid))
        Xall = np.vstack(masked)
        Fall = featurizer.transform(Xall)
        rep = len(masked)
        domain = DomainModel.fit(dom_feat.transform(X_grid[tr]), rng,
                                 _measured_features(X_grid, tr, cfg, dom_feat, rng, real))
        dist_out.append(domain.distance(dom_feat.transform(Xall)))
        X_other = across.spectra(f)
        F_other = None if X_other is None else featurizer.transform(X_other)
        if F_other is not None:
            across.distance.append(domain.distance(dom_feat.transform(X_other)))
        cov_out.append(np.isfinite(Xall).mean(axis=1))
        full_out.append(np.arange(len(Xall)) < len(te))
        group_out.append(np.tile(parents[folds == f], rep))
        type_out.append(np.tile(types[folds == f], rep))
        fold_out.append(np.full(len(Xall), f))
        for prop, y_all in labels.items():
            y_rep = np.tile(y_all[te], rep)
            y_out[prop].append(y_rep)
            ok = np.isfinite(y_all[tr]) & (np.isin(y_all[tr], CN_CLASSES) if prop == CN else True)
            if prop == CN:
                if len(np.unique(y_all[tr][ok])) < 2:
                    proba_out.append(np.full((len(Xall), len(classes)), np.nan))
                    if F_other is not None:
                        across.add_proba(f, np.full((len(F_other), len(classes)), np.nan))
                    continue
                Xf, yf = _training_rows(X_grid, tr[ok], y_all, _copies_for(prop, real, extra))
                est = _fit_property(Xf, yf, prop, cfg, featurizer, rng, cfg.calibration_seeds)
                # the fold model states what the final one will: the forests blended with the vote
                vote = (NeighbourVote.fit(X_grid[tr[ok]], y_all[tr[ok]], est.classes_, cfg.neighbour_vote, rng=rng,
                                          parents=all_parents[tr[ok]], blur=cfg.vote_blur, grid=cfg.grid)
                        if cfg.neighbour_vote > 0 else None)
                proba_out.append(_stated_proba(est, vote, Fall, Xall))
                if F_other is not None:
                    across.add_proba(f, _stated_proba(est, vote, F_other, X_other))
            else:
                if ok.sum() < 5:
                    pred_out[prop].append(np.full(len(Xall), np.nan))
                    spread_out[prop].append(np.full(len(Xall), np.nan))
                    continue
                Xf, yf = _training_rows(X_grid, tr[ok], y_all, _copies_for(prop, real, extra))
                est = _fit_property(Xf, yf, prop, cfg, featurizer, rng, cfg.calibration_seeds)
                pred_out[prop].append(est.predict(Fall))
                spread_out[prop].append(_trees_spread(est, Fall))
                if F_other is not None:
                    across.add(prop, f, est.predict(F_other), _trees_spread(est, F_other))
    dist = np.concatenate(dist_out)
    full = np.concatenate(full_out)
    final_domain = fit_domain(X_grid, idx, cfg, dom_feat, rng, real, sub.material_id)
    score = dist / final_domain.typical
    y = {p: np.concatenate(v) for p, v in y_out.items()}
    pred = {p: np.concatenate(v) for p, v in pred_out.items()}
    spread = {p: np.concatenate(v) for p, v in spread_out.items()}
    proba = np.vstack(proba_out) if proba_out else None
    method = {"folds": int(len(np.unique(folds))),
              "groups": "structure type where the library knows it, else parent structure (data.library.type_groups)",
              "seeds_per_fold_model": cfg.calibration_seeds, "n_held_out_spectra": int(len(idx)),
              "masked_copies": "low 30/50/75 % of the window, 1-3 random gaps",
              "interval": "split-conformal, |y - pred| / ((the trees' spread + a floor of "
                          f"{SPREAD_FLOOR_SHARE:g} x its mean) x domain score), per coverage band: in the domain "
                          "for a new parent structure (each parent weighs 1; Dunn et al. 2022), per quartile of "
                          "that scale (Mondrian on the difficulty, Bostrom & Johansson 2020), out of it the "
                          "larger of that and the one for a new structure type (the held-out rows of the "
                          "families' types, each type weighing 1)",
              "cn": "isotonic map of the predicted class probability",
              "domain": f"{cfg.domain_quantile:.0%} quantile of the training spectra's distance to other "
                        "materials' spectra, "
                        "per coverage band (whole and masked to the calibration windows)"
                        + (" (from measurement-like copies; feature scales include measurement noise)"
                           if _measures(cfg) and real is None else "")
                        + (" (from experiment-like copies; feature scales include their spread)"
                           if real is not None else ""),
              "held_out_flagged": float(np.mean(score[full] > final_domain.far_limit(np.ones(full.sum()))))}
    # the CN map is fitted on folds that hold parents out; a class seen in only a few parents
    # cannot be held out that way, and the map would learn confidence it has not earned
    cn_y = labels.get(CN)
    if cn_y is not None:
        per_class = {int(c): len(set(parents[cn_y[idx] == c].tolist())) for c in CN_CLASSES if np.any(cn_y[idx] == c)}
        method["cn_parents_per_class"] = per_class
        if min(per_class.values(), default=0) < MIN_CLASS_PARENTS:
            method["cn_probability"] = (f"not calibrated: a CN class comes from fewer than {MIN_CLASS_PARENTS} parent "
                                        "structures, so leaving parents out cannot show how it fails")
            proba = None
    if cfg.interval_unit not in ("parent", "spectrum"):
        raise ValueError(f"interval_unit {cfg.interval_unit!r}: 'parent' or 'spectrum'")
    if cfg.interval_unit == "spectrum":
        method["interval"] = ("split-conformal for a new spectrum, |y - pred| / ((the trees' spread + a floor) x "
                              "domain score), per coverage band")
    if cfg.cn_map not in ("single", "domain"):
        raise ValueError(f"cn_map {cfg.cn_map!r}: 'single' or 'domain'")
    coverage = np.concatenate(cov_out)
    # the flag's second test before the intervals: each side of the flag gets its own quantiles
    if DISTANCE in labels:
        fit_spread_limits(final_domain, method, X_grid, idx, labels[DISTANCE], sub, cfg, featurizer,
                          rng if flag_rng is None else flag_rng, real, extra)
    flagged = final_domain.flags(score, spread.get(final_domain.spread_property), coverage)[0]
    method["calibration_rows_flagged"] = float(np.mean(flagged))
    cal = fit_calibration(y, pred, proba, classes, score, coverage, full, final_domain, method,
                          groups=np.concatenate(group_out) if cfg.interval_unit == "parent" else None,
                          cn_map=cfg.cn_map, folds=np.concatenate(fold_out), types=np.concatenate(type_out),
                          spread=spread, flagged=flagged)
    if across.n:  # with the same-code intervals' spread floors
        cal.across_codes = across.quantiles(final_domain.typical, cal.spread_floors)
        cal.method["across_codes"] = across.describe(cal.across_codes)
        if proba is not None:  # the same-code CN probability is calibrated: so is the one across codes
            cal.confidence_knots_across, cn_info = across.confidence_map(classes)
            if cn_info:
                cal.method["across_codes"]["cn"] = cn_info
    return cal


def _trees_spread(est: Any, F: np.ndarray) -> np.ndarray:
    """The standard deviation over every tree of every seed of a fitted regressor's predictions of
    features ``F`` (the spread the final model's fast path returns as ``tree_std``)."""
    per, sq = PackedForests.from_sklearn(est.estimators_, est.columns_).per_forest(F, second=True)
    return tree_std(per, sq)[:, 0]


def fit_domain(X_grid: np.ndarray, rows: np.ndarray, cfg: TrainConfig, featurizer: Any, rng: np.random.Generator,
               real: ExperimentLike | None = None, materials: np.ndarray | None = None) -> DomainModel:
    """The domain score's first test (:class:`~.calibration.DomainModel`) fitted on the training
    ``rows`` (grid spectra; ``featurizer``: :data:`~.calibration.DOMAIN_FEATURIZATION`'s), with
    its typical in-family distance and its limits per coverage band (:func:`_far_limits`).
    ``materials``: the material of every spectrum (indexed by ``rows``), so a training spectrum's
    in-family distance is to other materials' spectra, as a held-out material's is."""
    met = _as_met(X_grid, rows, cfg, rng, real)
    domain = DomainModel.fit(featurizer.transform(X_grid[rows]), rng,
                             None if met is None else featurizer.transform(met),
                             None if materials is None else np.asarray(materials)[rows])
    domain.featurization = DOMAIN_FEATURIZATION
    in_family = domain.in_family_distance()
    domain.typical = float(np.median(in_family))
    domain.threshold = float(np.quantile(in_family, cfg.domain_quantile) / domain.typical)
    domain.far_limits = _far_limits(domain, in_family, (X_grid[rows] if met is None else met), featurizer, cfg)
    return domain


def _far_limits(domain: DomainModel, in_family: np.ndarray, X_met: np.ndarray, featurizer: Any, cfg: TrainConfig
                ) -> np.ndarray:
    """The domain flag's first test per coverage band: the ``cfg.domain_quantile`` of the
    training spectra's leave-material-out score (:meth:`~.calibration.DomainModel.in_family_distance`),
    whole (``in_family``, already computed) and masked to the calibration windows (``X_met``: the
    fitted rows as met, grid). A
    partial spectrum lies farther from whole training spectra (what it lacks counts as typical,
    and the distance is scaled up for it): one limit for every coverage flagged about half of the
    in-family held-out spectra measured over the low 30 % of the window (Fe, session 32)."""
    X = X_met[domain.reference_rows]
    parts = with_low_windows(X)
    score = np.concatenate([in_family]
                           + [domain.in_family_distance(featurizer.transform(P)) for P in parts[1:]]) / domain.typical
    coverage = np.concatenate([np.isfinite(P).mean(axis=1) for P in parts])
    return per_band_limits(score, coverage, cfg.domain_quantile)


def _stated_proba(est: Any, vote: NeighbourVote | None, F: np.ndarray, X_grid: np.ndarray) -> np.ndarray:
    """A fold model's CN probabilities as the final model states them (the forests blended with
    the vote where there is one), on the columns of all CN classes."""
    from .evaluation import on_cn_classes

    p = est.predict_proba(F)
    return on_cn_classes(p if vote is None else vote.blend(p, X_grid), est.classes_)


@dataclass
class _AcrossCodes:
    """Another code's spectra of one element, scored by the calibration's fold models."""

    X: np.ndarray  # grid spectra (whole)
    labels: dict[str, np.ndarray]  # property -> label values (the CN label too)
    parents: np.ndarray
    types: np.ndarray  # structure type where known, else the parent (data.library.type_groups)
    source: str = ""
    folds: np.ndarray | None = None
    distance: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # per fold scored: the rows of X (whole, then masked copies)
    coverage: list = field(default_factory=list)  # per fold scored: window coverage of each scored row
    preds: dict = field(default_factory=dict)  # property -> {fold: predictions}
    spreads: dict = field(default_factory=dict)  # property -> {fold: the trees' spread of each prediction}
    proba: dict = field(default_factory=dict)  # fold -> CN class probabilities (rows, CN_CLASSES)

    @classmethod
    def prepare(cls, other: SpectrumCollection | None, label_names: dict[str, str], cfg: TrainConfig
                ) -> _AcrossCodes:
        """``label_names``: the label each regression property of the model predicts (the other
        code's spectra are scored against the same label, not one chosen from their own data)."""
        from ..data.library import parent_groups, type_groups

        if other is None or not len(other):
            return cls(np.zeros((0, cfg.grid.n)), {}, np.zeros(0, str), np.zeros(0, str))
        X, e0 = spectra_to_grid(other.energy, other.mu, cfg.grid, cfg.normalization)
        keep = np.isfinite(e0) & (np.isfinite(X).mean(axis=1) > 0.9)
        sub = other[np.flatnonzero(keep)]
        return cls(X[keep], {p: np.asarray(sub.labels[name], float) for p, name in label_names.items()},
                   parent_groups(sub), type_groups(sub), source=",".join(sorted(set(sub.source.tolist()))))

    @property
    def n(self) -> int:
        return int(sum(len(r) for r in self.rows))  # scored rows, masked copies included

    def spectra(self, fold: int) -> np.ndarray | None:
        """Grid spectra of the other code's spectra of parents in ``fold``, whole and masked as the
        same-code ones (:func:`with_low_windows`; None if there are none)."""
        if self.folds is None:
            return None
        rows = np.flatnonzero(self.folds == fold)
        if not len(rows):
            return None
        parts = with_low_windows(self.X[rows])
        X = np.vstack(parts)
        self.rows.append(np.tile(rows, len(parts)))
        self.coverage.append(np.isfinite(X).mean(axis=1))
        return X

    def add(self, prop: str, fold: int, pred: np.ndarray, spread: np.ndarray) -> None:
        self.preds.setdefault(prop, {})[fold] = pred
        self.spreads.setdefault(prop, {})[fold] = spread

    def add_proba(self, fold: int, proba: np.ndarray) -> None:
        self.proba[fold] = proba

    def confidence_map(self, classes: np.ndarray) -> tuple[tuple[list[float], list[float]] | None, dict[str, Any]]:
        """The CN confidence map for the other code's spectra
        (:func:`~.calibration.across_codes_confidence_map`); (None, {}) without CN labels or
        predictions for every scored fold."""
        from .calibration import across_codes_confidence_map

        y_all = self.labels.get(CN)
        if y_all is None or len(self.proba) != len(self.rows) or not self.rows:
            return None, {}
        rows = np.concatenate(self.rows)
        proba = np.vstack([self.proba[f] for f in sorted(self.proba)])
        y = y_all[rows]
        ok = np.isin(y, classes) & np.all(np.isfinite(proba), axis=1)
        if ok.sum() < 10:
            return None, {}
        idx = np.searchsorted(classes, y[ok]).astype(int)
        return across_codes_confidence_map(proba[ok], idx, self.parents[rows][ok], self.folds[rows][ok])

    def quantiles(self, typical: float, floors: dict[str, float]) -> dict[str, list[list[float]]]:
        """Per property, the across-codes conformal quantiles, on the scale of the same-code ones
        (their spread ``floors``, :func:`~.calibration.difficulty`)."""
        from .calibration import fit_across_codes

        rows = np.concatenate(self.rows)
        score = np.concatenate(self.distance) / typical
        out = {}
        for prop, by_fold in self.preds.items():
            folds = sorted(by_fold)
            if len(folds) != len(self.rows):  # a fold skipped this property: no across-codes figure
                continue
            y = self.labels[prop][rows]
            if not np.isfinite(y).any():  # the other code's spectra lack the label (FEFF 9: no FEFF10 charge)
                continue
            pred = np.concatenate([by_fold[f] for f in folds])
            spread = np.concatenate([self.spreads[prop][f] for f in folds]) if prop in floors else None
            out[prop] = fit_across_codes(y, pred, score, np.concatenate(self.coverage), self.parents[rows],
                                         spread, floors.get(prop))
        return out

    def describe(self, quantiles: dict[str, list[list[float]]]) -> dict[str, Any]:
        rows = np.unique(np.concatenate(self.rows))
        return {"source": self.source, "n_spectra": int(len(rows)),
                "n_parents": int(len(set(self.parents[rows].tolist()))), "properties": sorted(quantiles),
                "rule": "the calibration folds' models predict the other code's spectra of held-out parents, "
                        "whole and masked; conformal quantile of |y - pred| / sigma for a new parent, "
                        "per coverage band"}


def _measures(cfg: TrainConfig) -> bool:
    return cfg.noise[1] > 0 or cfg.e0_jitter > 0


def _as_met(X_grid: np.ndarray, rows: np.ndarray, cfg: TrainConfig, rng: np.random.Generator,
            real: ExperimentLike | None = None) -> np.ndarray | None:
    """Grid spectra of ``rows`` as the model expects to meet them (rows aligned): experiment-like
    copies for a model trained on them, else measurement-like copies (noise, E0 jitter) for a live
    model, else None (a model of clean computed spectra)."""
    if real is not None:
        return real.one_each(rows, X_grid)
    if not _measures(cfg):
        return None
    return measurement_copies(X_grid[rows], cfg.grid, cfg.noise, cfg.e0_jitter, rng)


def _measured_features(X_grid: np.ndarray, rows: np.ndarray, cfg: TrainConfig, featurizer: Any,
                       rng: np.random.Generator, real: ExperimentLike | None = None) -> np.ndarray | None:
    """Features of ``rows`` as the model expects to meet them (:func:`_as_met`), or None."""
    X = _as_met(X_grid, rows, cfg, rng, real)
    return None if X is None else featurizer.transform(X)


def evaluate_property(pm: PropertyModel, F: np.ndarray, y: np.ndarray, train_labels: np.ndarray | None = None,
                      vote: NeighbourVote | None = None, X_grid: np.ndarray | None = None) -> dict[str, Any]:
    """Test metrics, each as mean and std over the seeds; for the classifier with a neighbour
    ``vote`` (and the rows' ``X_grid``), ``ensemble_accuracy`` is the blend's (the model's answer)
    and ``forest_ensemble_accuracy`` the forests' alone."""
    per = pm.packed.per_forest(F)  # (seeds, rows, outputs)
    if pm.kind == "classifier":
        classes = pm.packed.classes
        pred = classes[np.argmax(per, axis=2)]  # (seeds, rows)
        acc = (pred == y[None, :]).mean(axis=1)
        f1 = np.array([f1_score(y, p, labels=classes, average=None, zero_division=0) for p in pred])
        ens = classes[np.argmax(per.mean(axis=0), axis=1)]
        extra = {}
        if vote is not None and X_grid is not None:
            extra["forest_ensemble_accuracy"] = float(np.mean(ens == y))
            ens = classes[np.argmax(vote.blend(per.mean(axis=0), X_grid), axis=1)]
        out = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
               "ensemble_accuracy": float(np.mean(ens == y)), **extra,
               "f1_per_class": {str(int(c)): [float(f1[:, j].mean()), float(f1[:, j].std())]
                                for j, c in enumerate(classes)}, "n_test": int(len(y))}
        if train_labels is not None and len(train_labels):  # the baseline needs the training labels
            vals, counts = np.unique(train_labels, return_counts=True)
            out["modal_baseline_accuracy"] = float(np.mean(y == vals[np.argmax(counts)]))
        return out
    pred = per[:, :, 0]
    r2 = np.array([r2_score(y, p) for p in pred]) if len(y) > 1 else np.array([np.nan])
    mae = np.array([mean_absolute_error(y, p) for p in pred])
    return {"r2_mean": float(r2.mean()), "r2_std": float(r2.std()), "mae_mean": float(mae.mean()),
            "mae_std": float(mae.std()), "n_test": int(len(y))}


def coverage_curve(model: ElementModel, X_grid: np.ndarray, sub: SpectrumCollection, rows: np.ndarray,
                   fractions=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> dict[str, Any]:
    """Test metrics when only the low-energy ``fraction`` of the grid is measured."""
    out: dict[str, Any] = {"fractions": list(fractions)}
    if not len(X_grid):
        return out
    for name, pm in model.properties.items():
        y = sub.labels[pm.label][rows]
        ok = np.isfinite(y) & (np.isin(y, CN_CLASSES) if pm.kind == "classifier" else True)
        vals = []
        for f in fractions:
            F = model.featurize(mask_low_window(X_grid[ok], f))
            m = evaluate_property(pm, F, y[ok])
            vals.append(m["accuracy_mean"] if pm.kind == "classifier" else m["r2_mean"])
        out[name] = vals
    return out


def permutation_importance(pm: PropertyModel, F: np.ndarray, y: np.ndarray, n_repeats: int = 3,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Drop in test accuracy (classifier) or R^2 (regressor) when one feature column is shuffled.

    A second opinion on the impurity importances, computed on held-out rows with the seed-ensemble
    mean prediction (the fused fast path). Returns (mean, std) over ``n_repeats`` per feature.
    """
    from .fast import FusedForests

    fused = FusedForests.from_packed({pm.name: pm.packed})

    def score(X):
        out = fused.per_property(X)[pm.name].mean(axis=0)
        if pm.kind == "classifier":
            return float(np.mean(pm.packed.classes[np.argmax(out, axis=1)] == y))
        return float(r2_score(y, out[:, 0]))

    rng = np.random.default_rng(seed)
    base = score(F)
    drops = np.zeros((F.shape[1], n_repeats))
    for j in range(F.shape[1]):
        for r in range(n_repeats):
            Xp = F.copy()
            Xp[:, j] = Xp[rng.permutation(len(Xp)), j]
            drops[j, r] = base - score(Xp)
    return drops.mean(axis=1), drops.std(axis=1)
