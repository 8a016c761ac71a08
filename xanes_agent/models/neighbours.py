"""A nearest-neighbour CN vote beside the forests: whole-spectrum likeness where splits mislead.

A forest files a spectrum by the features it split on to separate the classes of its training
structures; a structure type it never saw can share those features with another class (the
square-pyramidal 112 family, five-coordinate, is called six-coordinate for every element when left
out, session 25) while its nearest training spectra, compared point by point, are mostly of its
own class. :class:`NeighbourVote` keeps the normalized grid spectra of the training rows and
their CN labels; the CN probability the model reports is ``(1 - share) x forests + share x vote``
(the vote: the ``k`` nearest training spectra, each weighing 1 / its distance), and the
calibration's fold models blend the same way, so the confidence map and the stated probability
are those of the blend.

Measured with ``benchmarks/transfer.py --neighbour-vote 0.5`` (session 27, bundled library): CN
balanced accuracy with each family left out (hosts in training) 0.63 -> 0.68 mean over Ti..Cu
(V 0.71 -> 0.83, Ni 0.57 -> 0.75, Co 0.60 -> 0.68; Mn and Fe -0.01 / -0.02), parents left out
0.81 -> 0.83, Cu FEFF10 -> FEFF 9 0.64 -> 0.63. Among standardized polynomial features instead of
the spectra the vote did not help. Distances are Euclidean over the grid points both spectra
have (a partial spectrum is compared where it is measured, the sum scaled to the whole grid).

Each parent structure votes once per CN it holds (session 28): a voter is a (parent structure, CN)
pair at the distance of its nearest spectrum, so a prototype family of 40 strained near-copies is
one voice, not all five. ``benchmarks/transfer.py --neighbour-vote 0.5 --voters parent`` against
the same run by spectrum (session-27 library, one seed x 100 trees per fold; CN balanced accuracy):
a structure type left out, hosts in training, 0.68 -> 0.69 mean over Ti..Cu (Ti 0.67 -> 0.71, V
0.79 -> 0.84, Mn 0.51 -> 0.54, Co 0.68 -> 0.67), families only 0.43 -> 0.45, parents left out
0.82 -> 0.83, Cu FEFF10 -> FEFF 9 0.63 -> 0.63. A larger share trades the other code for new
types (a one-seed diagnostic, parent votes: share 0.75, types 0.73 and FEFF 9 0.62; the vote alone
0.74 and 0.60), so the share stayed 0.5. With the committee of views (session 34,
:mod:`.training`) the forests call new structure types better themselves and the vote's share
became 0.25: at 0.5 it outvoted their five-coordinate answer for Mn's and Fe's left-out square
pyramids (52 of 54 and 59 of 60 called 6; type out, hosts in training, Mn 0.52, Fe 0.60 against
0.61, 0.68 at 0.25 and 0.74, 0.88 without a vote), while without it Ti, Co, Ni and Cu lost 0.06-0.31
(Ni 0.90 -> 0.59): mean over Ti..Cu 0.781 (0.5), 0.777 (0.25), 0.778 (none); parents left out
0.863, 0.868, 0.859; Cu FEFF10 -> FEFF 9 0.62, 0.64, 0.61. Bundles of format 4 hold no parents and vote per spectrum,
as they were trained.

The distances can be taken on spectra blurred by a Gaussian (``blur``, ``TrainConfig.vote_blur``,
format 6; session 29; off by default): the prototype families are sharper than real sites of the
same CN (white lines near 1.75 of the step against 1.25-1.5), so a held-out family's nearest
spectra were other families whatever the hosts held. On whole spectra a 2 eV blur helped
(``scripts/vote_variants.py``, the same forests and folds for every vote, session-28 library,
share 0.5): a structure type left out with hosts in training 0.718 -> 0.738 mean over Ti..Cu (Ti
0.71 -> 0.74, Cr 0.80 -> 0.83, Mn 0.47 -> 0.53, Fe 0.58 -> 0.61; Co and Cu -0.02), parents left
out 0.828 -> 0.832, Cu FEFF10 -> FEFF 9 0.638 -> 0.639. On the partial spectra of a live scan it
did not: the Cu demo model read CN at 20 % of a scan 0.80 against 0.87 unblurred, and 0.83
against 0.85 at the plan's stop (``benchmarks/points_to_decision.py``, 60 samples, full scan 0.88
both), so the models compare spectra as they are until more samples decide. Where a blur is used,
both sides are blurred, and a partial spectrum is compared with the stored spectra blurred from
the points it has (each point from the points both have); the stored spectra stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .features import Grid, blur_matrix, grid_blur

#: Neighbours that vote.
NEIGHBOURS = 5
#: The vote's share of the CN probability (``TrainConfig.neighbour_vote``).
VOTE_SHARE = 0.25
#: Training spectra kept in a bundle (a seeded subset beyond this).
MAX_VOTERS = 2000
#: Who votes: each parent structure once per CN it holds, or (bundles of format 4) each spectrum.
VOTERS = ("parent", "spectrum")
#: Gaussian FWHM (eV) of the blur before distances are taken (``TrainConfig.vote_blur``).
VOTE_BLUR = 0.0
#: The widest blur a bundle may ask for (eV): beyond it every K-edge spectrum looks alike.
MAX_BLUR = 10.0


def valid_blur(fwhm: float) -> bool:
    """A vote blur (eV FWHM) the models take: 0 (none) to :data:`MAX_BLUR`."""
    return 0.0 <= fwhm <= MAX_BLUR


@dataclass
class NeighbourVote:
    """Grid spectra (rows, grid points; NaN where a spectrum had no value) and CN labels of the
    training spectra; ``classes`` are the CN classifier's, in its column order; ``parents``: each
    spectrum's parent structure as an integer (None: every spectrum votes on its own); ``blur``:
    the Gaussian FWHM (eV) both the stored and the asked spectra are blurred by before distances
    are taken, on ``grid`` (0: none; format 5 and older bundles)."""

    spectra: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    share: float = VOTE_SHARE
    k: int = NEIGHBOURS
    parents: np.ndarray | None = None
    blur: float = 0.0
    grid: Grid | None = None

    def __post_init__(self) -> None:
        if self.blur > 0 and (self.grid is None or self.grid.n != np.shape(self.spectra)[1]):
            raise ValueError("a blurred vote needs the grid of its spectra")
        self._kernel = blur_matrix(self.grid, self.blur) if self.blur > 0 else None
        # what every call compares against, derived once from the stored spectra (the live agent
        # asks on every update): values with 0 where missing, which points each has, their squares
        R = np.asarray(self.spectra, np.float64)
        self._refs = self._prepared(self._blurred(R))
        self._raw = R if self._kernel is not None else None  # blurred again per partial spectrum
        self._prior = np.array([np.mean(np.asarray(self.labels) == c) for c in self.classes])
        self._voters = None
        if self.parents is not None:
            # voters = (parent, CN) pairs: spectra sorted by pair, where each pair starts, its CN
            key = np.asarray(self.parents, np.int64) * 16 + np.asarray(self.labels, np.int64)
            _, pair = np.unique(key, return_inverse=True)
            order = np.argsort(pair, kind="stable")
            starts = np.r_[0, np.flatnonzero(np.diff(pair[order])) + 1]
            self._voters = (order, starts, np.asarray(self.labels)[order][starts])

    @classmethod
    def fit(cls, X_grid: np.ndarray, y: np.ndarray, classes: np.ndarray, share: float = VOTE_SHARE,
            k: int = NEIGHBOURS, rng: np.random.Generator | None = None,
            parents: np.ndarray | None = None, blur: float = 0.0, grid: Grid | None = None) -> NeighbourVote:
        """From training grid spectra ``X_grid`` and their CN labels ``y`` (rows of another class
        than ``classes`` are left out); at most :data:`MAX_VOTERS` rows, a seeded subset.
        ``parents``: each row's parent structure (any labels; None: every spectrum votes);
        ``blur`` (eV FWHM, on ``grid``): compare blurred spectra."""
        X_grid, y = np.asarray(X_grid, float), np.asarray(y, float)
        keep = np.flatnonzero(np.isin(y, classes))
        if len(keep) > MAX_VOTERS:
            keep = np.sort((rng or np.random.default_rng(0)).choice(keep, MAX_VOTERS, replace=False))
        ids = None if parents is None else np.unique(np.asarray(parents)[keep], return_inverse=True)[1].astype(np.int32)
        return cls(X_grid[keep].astype(np.float32), y[keep].astype(np.int8), np.asarray(classes), float(share), int(k),
                   ids, float(blur), grid)

    def _blurred(self, X: np.ndarray) -> np.ndarray:
        return X if self._kernel is None else grid_blur(X, self.grid, self.blur, self._kernel)

    @staticmethod
    def _prepared(R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored spectra as the distance needs them: values (0 where missing), which points each
        has, the squared values."""
        have = np.isfinite(R)
        r0 = np.where(have, R, 0.0)
        return r0, have.astype(float), r0 ** 2

    @staticmethod
    def _distances(X: np.ndarray, refs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """(rows, stored) Euclidean distances over the points both have, scaled to the whole grid;
        inf where they share none."""
        r0, have, r0_sq = refs
        have_x = np.isfinite(X)
        X0 = np.where(have_x, X, 0.0)
        mx = have_x.astype(float)
        # sum over the points both have of (x - r)^2, and how many points that is
        d2 = (X0 ** 2) @ have.T - 2.0 * X0 @ r0.T + mx @ r0_sq.T
        common = mx @ have.T
        d = np.sqrt(np.maximum(d2, 0.0) * X.shape[1] / np.maximum(common, 1.0))
        d[common < 1] = np.inf
        return d

    def proba(self, X_grid: np.ndarray) -> np.ndarray:
        """(rows, classes) vote shares; a row with no grid point in common with the training
        spectra gets the training rows' class shares."""
        X = np.atleast_2d(np.asarray(X_grid, float))
        if self._kernel is None:
            d = self._distances(X, self._refs)
        else:
            measured = np.isfinite(X)
            Xb = self._blurred(X)
            d = np.empty((len(X), len(self.labels)))
            whole = measured.all(axis=1)
            d[whole] = self._distances(Xb[whole], self._refs)
            part = np.flatnonzero(~whole)
            if len(part):  # the stored spectra blurred from the points each partial spectrum has
                masks, which = np.unique(measured[part], axis=0, return_inverse=True)
                for j, m in enumerate(masks):
                    rows = part[np.ravel(which) == j]
                    d[rows] = self._distances(Xb[rows], self._prepared(self._blurred(np.where(m, self._raw, np.nan))))
        labels = self.labels
        if self._voters is not None:  # each (parent, CN) pair at its nearest spectrum's distance
            order, starts, labels = self._voters
            d = np.minimum.reduceat(d[:, order], starts, axis=1)
        k = min(self.k, d.shape[1])
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        dn = np.take_along_axis(d, near, axis=1)
        w = np.where(np.isfinite(dn), 1.0 / np.maximum(dn, 1e-9), 0.0)
        votes = np.stack([(w * (labels[near] == c)).sum(axis=1) for c in self.classes], axis=1)
        tot = votes.sum(axis=1, keepdims=True)
        return np.where(tot > 0, votes / np.where(tot > 0, tot, 1.0), self._prior)

    def blend(self, forest_proba: np.ndarray, X_grid: np.ndarray) -> np.ndarray:
        """The CN probability the model states before calibration: forests and vote, by ``share``."""
        return (1.0 - self.share) * np.asarray(forest_proba, float) + self.share * self.proba(X_grid)

    # -- bundle I/O ---------------------------------------------------------------------------------
    def to_arrays(self, prefix: str = "vote__") -> dict[str, np.ndarray]:
        arrays = {f"{prefix}spectra": self.spectra, f"{prefix}labels": self.labels}
        if self.parents is not None:
            arrays[f"{prefix}parents"] = self.parents
        return arrays

    def meta(self) -> dict[str, Any]:
        return {"share": self.share, "k": self.k, "classes": [float(c) for c in self.classes],
                "n": int(len(self.labels)), "voters": "spectrum" if self.parents is None else "parent",
                "blur_fwhm": self.blur}

    @classmethod
    def from_bundle(cls, arrays: dict[str, np.ndarray], meta: Any, grid: Grid, classes: np.ndarray,
                    prefix: str = "vote__") -> NeighbourVote:
        """Read and check what a bundle holds: a (rows, ``grid.n``) float array (NaN where a
        spectrum had no value, nothing infinite), one label per row among ``classes`` (the CN
        classifier's, listed in the record), a share in [0, 1] and 1 <= k <= rows; where the
        record says each parent votes (format 5), one non-negative integer parent per row; a blur
        (format 6) between 0 and :data:`MAX_BLUR` eV. Raises ValueError naming what is wrong."""
        grid_n = grid.n
        if not isinstance(meta, dict):
            raise ValueError("neighbour vote record is not a mapping")
        spectra, labels = arrays.get(f"{prefix}spectra"), arrays.get(f"{prefix}labels")
        if spectra is None or labels is None:
            raise ValueError("neighbour vote arrays missing")
        if spectra.dtype.kind != "f" or spectra.ndim != 2 or spectra.shape[1] != grid_n or len(spectra) < 1:
            raise ValueError(f"neighbour vote spectra must be (rows, {grid_n}) floats, got {spectra.shape}")
        if np.isinf(spectra).any():
            raise ValueError("neighbour vote spectra hold infinite values")
        if labels.dtype.kind not in "iu" or labels.shape != (len(spectra),):
            raise ValueError("neighbour vote labels must be one integer per spectrum")
        listed = meta.get("classes")
        if not isinstance(listed, list) or [float(c) for c in listed] != [float(c) for c in classes]:
            raise ValueError("neighbour vote classes differ from the CN classifier's")
        if not np.all(np.isin(labels, classes)):
            raise ValueError("neighbour vote labels outside the CN classes")
        share, k = float(meta["share"]), meta["k"]
        if not 0.0 <= share <= 1.0 or not isinstance(k, int) or not 1 <= k <= len(spectra):
            raise ValueError(f"neighbour vote share {share} / k {k} out of range")
        voters = meta.get("voters", "spectrum")
        if voters not in VOTERS:
            raise ValueError(f"neighbour vote voters {voters!r}: one of {', '.join(VOTERS)}")
        parents = arrays.get(f"{prefix}parents")
        if voters == "parent":
            if parents is None or parents.dtype.kind not in "iu" or parents.shape != (len(spectra),):
                raise ValueError("neighbour vote parents must be one integer per spectrum")
            if parents.min() < 0:
                raise ValueError("neighbour vote parents must be non-negative")
        elif parents is not None:
            raise ValueError("neighbour vote parents given for a vote by spectrum")
        blur = meta.get("blur_fwhm", 0.0)
        if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not valid_blur(blur):
            raise ValueError(f"neighbour vote blur {blur!r}: a number of eV from 0 to {MAX_BLUR:g}")
        return cls(spectra, labels, np.asarray(classes), share, k, parents if voters == "parent" else None,
                   float(blur), grid)
