"""The model grid and the two featurizations of the study, as scikit-learn transformers.

Grid: 120 points, uniform, from E0 - 15 eV to E0 + 45 eV (spacing 0.504 eV), E0 the half-step
crossing of the main rise (:func:`~xanes_agent.foundation.normalization.find_e0`). The study used
E0 - 5 .. E0 + 45 eV on 100 points; the window reaches 10 eV lower because that is where the
coordination shows before the edge (pre-edge peaks of tetrahedral sites, the 1s -> 4p shoulder of
Cu), and the transfer benchmark chose it: with the half-step E0 it lifted CN balanced accuracy on
parent structures held out from 0.74 to 0.80 (mean of the 8 elements; up to 0.11 for Fe) and across
codes (Cu FEFF10 -> FEFF 9) from 0.55 to 0.64 (docs/models.md, session 23). Computed spectra
start at the Fermi level (FEFF), below which there are no empty states to absorb into;
:func:`spectra_to_grid` extends them there with mu = 0 (:func:`extend_below_fermi`), so the
window is covered as a measured spectrum covers it.

Coverage: a grid point is covered when it lies between two measured points at most ``max_gap`` eV
apart (default 1.6 eV, ~3 grid steps) or within ``max_gap / 2`` of a measured point; uncovered grid
points are NaN. So a growing live spectrum featurizes with NaN exactly where it is not yet measured.

``PointwiseFeaturizer``: the grid values.
``PolynomialFeaturizer``: for 4, 5, 10 and 20 equal chunks of the grid (30, 24, 12, 6 points), the
cubic least-squares coefficients a0..a3 with x (eV) centred in each chunk (156 values), plus the
white-line energy (eV relative to E0, the grid maximum) = 157 features. The fit is one
precomputed linear map (grid points x 156) applied to a whole batch; a chunk's coefficients are NaN
unless all of its grid points are covered (a cubic needs 4, the smallest chunk has 6), and the white
line is NaN unless E0 .. E0 + 25 eV is covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..foundation.normalization import find_e0, normalize


@dataclass(frozen=True)
class Grid:
    """Energies relative to E0 (eV)."""

    start: float = -15.0
    stop: float = 45.0
    n: int = 120

    @property
    def energies(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.n)

    @property
    def step(self) -> float:
        return (self.stop - self.start) / (self.n - 1)

    def as_dict(self) -> dict[str, float]:
        return {"start": self.start, "stop": self.stop, "n": self.n}


DEFAULT_GRID = Grid()
DEFAULT_MAX_GAP = 1.6
WHITE_LINE_RANGE = (0.0, 25.0)


def blur_matrix(grid: Grid, fwhm: float) -> np.ndarray:
    """Gaussian smoothing of grid spectra as a matrix K (grid.n x grid.n): ``X @ K.T`` blurs each
    row with a Gaussian of ``fwhm`` eV (rows of K sum to 1 before :func:`grid_blur` renormalizes
    over the covered points); ``fwhm`` > 0."""
    g = grid.energies
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    K = np.exp(-0.5 * ((g[:, None] - g[None, :]) / sigma) ** 2)
    K[np.abs(g[:, None] - g[None, :]) > 4 * sigma] = 0.0
    return K / K.sum(axis=1, keepdims=True)


def grid_blur(X: np.ndarray, grid: Grid, fwhm: float, K: np.ndarray | None = None) -> np.ndarray:
    """Grid spectra blurred by a Gaussian of ``fwhm`` eV, each point from the covered points
    around it (the kernel renormalized over them); uncovered points stay NaN, so a partial
    spectrum is blurred the same way wherever it is measured. ``K``: :func:`blur_matrix` of
    ``grid`` and ``fwhm``, where the caller keeps it."""
    X = np.asarray(X, float)
    if fwhm <= 0:
        return X.copy()
    K = blur_matrix(grid, fwhm) if K is None else K
    finite = np.isfinite(X)
    num = np.where(finite, X, 0.0) @ K.T
    den = finite.astype(float) @ K.T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~finite] = np.nan
    return out


def coverage_mask(energy_rel: np.ndarray, grid: Grid = DEFAULT_GRID, max_gap: float = DEFAULT_MAX_GAP) -> np.ndarray:
    """Boolean mask of grid points covered by measured energies (relative to E0, sorted, eV)."""
    g = grid.energies
    e = np.asarray(energy_rel, float)
    if len(e) == 0:
        return np.zeros(grid.n, bool)
    j = np.searchsorted(e, g)  # e[j-1] < g <= e[j]
    lo = e[np.clip(j - 1, 0, len(e) - 1)]
    hi = e[np.clip(j, 0, len(e) - 1)]
    inside = (j > 0) & (j < len(e)) & (hi - lo <= max_gap)
    near = np.minimum(np.abs(g - lo), np.abs(hi - g)) <= max_gap / 2
    return inside | near


def to_grid(energy: np.ndarray, mu: np.ndarray, e0: float, grid: Grid = DEFAULT_GRID,
            max_gap: float = DEFAULT_MAX_GAP) -> np.ndarray:
    """Interpolate a normalized spectrum onto the grid; NaN where not covered (see module doc)."""
    rel = np.asarray(energy, float) - e0
    vals = np.interp(grid.energies, rel, mu)
    vals[~coverage_mask(rel, grid, max_gap)] = np.nan
    return vals


BELOW_FERMI_EV = 40.0  # how far below its first point a computed spectrum is extended (eV)
BELOW_FERMI_STEP = 0.5  # eV between the added points


def extend_below_fermi(energy: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A computed spectrum extended :data:`BELOW_FERMI_EV` eV below its first point with mu = 0.

    FEFF starts a spectrum at the Fermi level, below which there are no empty states to absorb
    into; a measured spectrum is ~0 there after its pre-edge level is subtracted. Only for computed
    spectra: a measured one is never extended (what it has not measured stays unmeasured).
    """
    energy = np.asarray(energy, float)
    pad = np.arange(energy[0] - BELOW_FERMI_EV, energy[0] - BELOW_FERMI_STEP / 2, BELOW_FERMI_STEP)
    return np.concatenate([pad, energy]), np.concatenate([np.zeros(len(pad)), np.asarray(mu, float)])


def spectra_to_grid(energies, mus, grid: Grid = DEFAULT_GRID, normalization: str = "post_edge",
                    max_gap: float = DEFAULT_MAX_GAP, computed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normalize each spectrum and put it on the grid; returns (X (n, grid.n), e0 (n,) in eV).

    ``computed``: the spectra are computed ones (FEFF), extended below the Fermi level first
    (:func:`extend_below_fermi`); False for measured spectra.
    """
    X = np.full((len(energies), grid.n), np.nan)
    e0s = np.full(len(energies), np.nan)
    for i, (e, m) in enumerate(zip(energies, mus)):
        if computed:
            e, m = extend_below_fermi(e, m)
        nrm = normalize(e, m, normalization, e0=find_e0(e, m))  # the models' E0 whatever the normalization
        e0s[i] = nrm.e0
        if np.isfinite(nrm.e0):
            X[i] = to_grid(e, nrm.mu, nrm.e0, grid, max_gap)
    return X, e0s


class _GridFeaturizer(TransformerMixin, BaseEstimator):
    """Shared parts of the featurizers: the grid parameters, input checks, feature names."""

    grid_start: float
    grid_stop: float
    grid_n: int

    @property
    def grid(self) -> Grid:
        return Grid(self.grid_start, self.grid_stop, self.grid_n)

    def _check(self, X) -> np.ndarray:
        X = np.asarray(X, float)
        if X.ndim != 2 or X.shape[1] != self.grid_n:
            raise ValueError(f"expected spectra on the {self.grid_n}-point grid, got shape {X.shape}")
        return X

    def get_feature_names_out(self, input_features=None):
        return self.feature_names_


class PointwiseFeaturizer(_GridFeaturizer):
    """Identity on the grid: feature i is the normalized mu at grid energy i (eV rel. E0)."""

    def __init__(self, grid_start: float = -15.0, grid_stop: float = 45.0, grid_n: int = 120):
        self.grid_start = grid_start
        self.grid_stop = grid_stop
        self.grid_n = grid_n

    def fit(self, X=None, y=None):
        g = self.grid.energies
        h = self.grid.step / 2
        self.feature_names_ = np.array([f"mu[{x:+.2f} eV]" for x in g])
        self.energy_ranges_ = np.stack([g - h, g + h], axis=1)
        self.n_features_in_ = self.grid_n
        return self

    def transform(self, X):
        return self._check(X).copy()


class DerivativeFeaturizer(PointwiseFeaturizer):
    """The grid values and their energy derivative: mu at each grid energy, then dmu/dE there (per
    eV; central differences, one-sided at the window's ends, NaN where a neighbour is missing).
    The derivative does not depend on the normalization's offset, and locates edge and peak
    positions directly; compared with the study's two featurizations under transfer
    (``benchmarks/transfer.py --features derivative``, docs/models.md)."""

    def fit(self, X=None, y=None):
        super().fit()
        g = self.grid.energies
        self.feature_names_ = np.concatenate([self.feature_names_, [f"dmu/dE[{x:+.2f} eV]" for x in g]])
        h = self.grid.step
        self.energy_ranges_ = np.vstack([self.energy_ranges_, np.stack([g - h, g + h], axis=1)])
        return self

    def transform(self, X):
        X = self._check(X)
        return np.hstack([X, np.gradient(X, self.grid.step, axis=1)])


class PolynomialFeaturizer(_GridFeaturizer):
    """Multiscale cubic coefficients + white-line energy (157 features on the default grid)."""

    def __init__(self, chunks: tuple[int, ...] = (4, 5, 10, 20), degree: int = 3, white_line: bool = True,
                 grid_start: float = -15.0, grid_stop: float = 45.0, grid_n: int = 120):
        self.chunks = chunks
        self.degree = degree
        self.white_line = white_line
        self.grid_start = grid_start
        self.grid_stop = grid_stop
        self.grid_n = grid_n

    def fit(self, X=None, y=None):
        g = self.grid.energies
        n, d = self.grid_n, self.degree + 1
        blocks, members, names, ranges = [], [], [], []
        for nc in self.chunks:
            if n % nc:
                raise ValueError(f"{n} grid points do not split into {nc} equal chunks")
            size = n // nc
            if size < d:
                raise ValueError(f"chunks of {size} points cannot fit a degree-{self.degree} polynomial")
            for c in range(nc):
                idx = np.arange(c * size, (c + 1) * size)
                x = g[idx] - g[idx].mean()  # centred: a0 is the chunk's mean level, a1 its slope
                V = np.vander(x, d, increasing=True)  # columns x^0 .. x^3
                P = np.linalg.pinv(V)  # (d, size): least-squares projection
                block = np.zeros((n, d))
                block[idx] = P.T
                blocks.append(block)
                m = np.zeros((n, d))
                m[idx] = 1.0
                members.append(m)
                h = (g[1] - g[0]) / 2  # chunks tile the window: each owns half a step beyond its end points
                lo, hi = g[idx[0]] - h, g[idx[-1]] + h
                for k in range(d):
                    names.append(f"chunks{nc}_c{c}_a{k}[{lo:+.1f},{hi:+.1f} eV]")
                    ranges.append((lo, hi))
        self.projection_ = np.hstack(blocks)  # (n, 4 * sum(chunks))
        self.membership_ = np.hstack(members)
        if self.white_line:
            names.append("white_line_energy")
            ranges.append(WHITE_LINE_RANGE)
        self.feature_names_ = np.array(names)
        self.energy_ranges_ = np.array(ranges, float)
        self.n_features_in_ = n
        return self

    def transform(self, X):
        X = self._check(X)
        missing = np.isnan(X)
        coef = np.where(missing, 0.0, X) @ self.projection_
        coef[(missing.astype(float) @ self.membership_) > 0] = np.nan
        if not self.white_line:
            return coef
        return np.hstack([coef, self._white_line(X)[:, None]])

    def _white_line(self, X: np.ndarray) -> np.ndarray:
        g = self.grid.energies
        need = (g >= WHITE_LINE_RANGE[0]) & (g <= WHITE_LINE_RANGE[1])
        ok = ~np.isnan(X[:, need]).any(axis=1)
        wl = g[np.argmax(np.where(np.isnan(X), -np.inf, X), axis=1)]
        return np.where(ok, wl, np.nan)


FEATURIZATIONS = ("pointwise", "polynomial", "derivative")
#: What the models train on (session 34: the grid values, in a committee of views;
#: :mod:`~xanes_agent.models.training`).
DEFAULT_FEATURIZATION = "pointwise"
#: Where the edge view ends (eV above E0): the pre-edge and the main rise, before the region the
#: medium-range order shapes.
EDGE_VIEW_STOP = 8.0


def edge_views(stop: float = EDGE_VIEW_STOP, grid: Grid = DEFAULT_GRID) -> tuple[tuple[float, float], ...]:
    """The committee of two views (``TrainConfig.views``): the whole window, and the window's start
    up to E0 + ``stop`` eV. ``stop`` 0: no committee (every forest sees every feature)."""
    if stop == 0:
        return ()
    if not grid.start < stop <= grid.stop:
        raise ValueError(f"the edge view's end {stop!r} eV must lie in the window, above {grid.start:g} and at most "
                         f"{grid.stop:g} eV (0: no views)")
    return ((grid.start, grid.stop), (grid.start, float(stop)))


#: The models' views (:mod:`~xanes_agent.models.training`).
EDGE_VIEWS = edge_views()


def view_columns(featurizer, windows, grid: Grid = DEFAULT_GRID) -> list[np.ndarray]:
    """The feature columns inside each energy window (eV relative to E0; ``(start, stop)``), from
    the fitted ``featurizer``'s ``energy_ranges_``: a feature belongs to a window when its range
    lies within it, give or take one grid step. For the seed ensembles' committees of views
    (:mod:`~xanes_agent.models.ensemble`). Raises ValueError for a window that holds no feature."""
    ranges = np.asarray(featurizer.energy_ranges_, float)
    tol = grid.step + 1e-9
    out = []
    for lo, hi in windows:
        lo, hi = float(lo), float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"a view's window must be two finite energies, start < stop (eV), got {(lo, hi)}")
        cols = np.flatnonzero((ranges[:, 0] >= lo - tol) & (ranges[:, 1] <= hi + tol))
        if not len(cols):
            raise ValueError(f"no feature lies within the view's window {lo:g} .. {hi:g} eV")
        out.append(cols)
    return out


def make_featurizer(name: str, grid: Grid = DEFAULT_GRID):
    """A fitted featurizer by name (``pointwise``, ``polynomial`` or ``derivative``)."""
    kw = dict(grid_start=grid.start, grid_stop=grid.stop, grid_n=grid.n)
    if name == "pointwise":
        return PointwiseFeaturizer(**kw).fit()
    if name == "polynomial":
        return PolynomialFeaturizer(**kw).fit()
    if name == "derivative":
        return DerivativeFeaturizer(**kw).fit()
    raise ValueError(f"unknown featurization {name!r}; choose one of {', '.join(FEATURIZATIONS)}")
