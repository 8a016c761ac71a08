"""Edge finding and normalization of mu(E).

Three normalizations:

``post_edge``  the study's convention: mu divided by its value at E0 + 50 eV (FEFF's own rule),
               after subtracting the pre-edge level (~0 for computed spectra, the background for
               measured ones, so both land on the same scale)
``max``        the same with the maximum instead of the E0 + 50 eV value
``athena``     the Athena/Larch convention for experimental data: a pre-edge line fitted over
               [E0+pre1, E0+pre2], a post-edge polynomial over [E0+norm1, E0+norm2], the edge step as
               their difference at E0, and norm = (mu - pre_edge) / edge_step. It follows
               xraylarch's ``pre_edge`` defaults and agrees with it to the tolerance stated in
               ``tests/test_normalization.py`` (fixture made by ``scripts/make_larch_fixture.py``).

Partial spectra (the edge, or E0 + 50 eV, not measured yet) are normalized with an explicit
``confident=False`` and a reason, never a silently wrong value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("post_edge", "max", "athena")


@dataclass(frozen=True)
class Normalized:
    """A normalized spectrum. ``energy`` in eV (absolute), ``e0`` in eV, ``mu`` dimensionless."""

    energy: np.ndarray
    mu: np.ndarray
    e0: float
    scale: float
    method: str
    confident: bool = True
    reason: str = ""


HALF_STEP_LEVEL = 0.5  # of the edge step: E0 is where the main rise crosses it
HALF_STEP_SUSTAIN = 10.0  # eV the rise must stay above that level (a pre-edge peak is narrower)
HALF_STEP_ROUNDS = 5  # times the step is measured again about the crossing (find_e0)
HALF_STEP_TOLERANCE = 0.005  # eV: the crossing has settled


def find_e0(energy: np.ndarray, mu: np.ndarray, level: float = HALF_STEP_LEVEL) -> float:
    """Edge energy E0 (eV): where the main rise of the edge crosses half the edge step.

    First the steepest point of the main rise (:func:`steepest_rise`); then, with mu post-edge
    normalized about it (:func:`post_edge_normalize`), the first upward crossing of
    ``HALF_STEP_LEVEL`` after which mu stays above that level for ``HALF_STEP_SUSTAIN`` eV (or to the
    last point), interpolated between the two points around it; where there is none, the steepest
    point. Why not the steepest point itself: on edges with a shoulder (the 1s -> 4p shoulder of Cu,
    the stepped rises of many Mn..Ni sites) which flank is steepest depends on fine detail, so two
    codes computing the same site put it on different flanks, up to 10 eV apart. On 384 Cu sites
    computed by both FEFF10 and FEFF 9 the steepest point moved one spectrum against the other by more
    than 2 eV for 22 % of them, the half-step crossing for 5 % (docs/models.md, session 23); the
    half-step edge position is also the usual one in XANES work. A pre-edge peak does not stay above
    half the step for 10 eV, so it is not taken for the edge. ``level``: another share of the step
    (``scripts/e0_across_codes.py`` compares some); the models use the default.

    The step is then measured again about the crossing itself, until the crossing moves less than
    ``HALF_STEP_TOLERANCE`` eV (at most ``HALF_STEP_ROUNDS`` times): E0 is the half-step point of the
    normalization about E0, the one the models' spectra get. Taken about the steepest point alone, the
    step (mu 50 eV above it) followed whichever flank was steepest, and that depends on how finely
    each flank is measured: on 60 held-out Fe spectra, the points the plan had measured at its stop put
    E0 a median 0.07 eV (90th percentile 0.23, largest 0.91 eV) from the full scan's, and one sample's
    CN flipped with it; about E0 itself, 0.005 (0.02, 0.05) eV (session 40).

    Returns NaN when fewer than 8 points are given.
    """
    e_steep = steepest_rise(energy, mu)
    if not np.isfinite(e_steep):
        return e_steep
    energy, mu = np.asarray(energy, float), np.asarray(mu, float)
    e0 = _half_step_crossing(energy, mu, e_steep, level)
    if e0 is None:
        return e_steep
    for _ in range(HALF_STEP_ROUNDS):
        again = _half_step_crossing(energy, mu, e0, level)
        if again is None:
            break
        moved, e0 = abs(again - e0), again
        if moved < HALF_STEP_TOLERANCE:
            break
    return e0


def _half_step_crossing(energy: np.ndarray, mu: np.ndarray, about: float, level: float) -> float | None:
    """The first upward crossing of ``level`` (mu post-edge normalized about ``about`` eV) that stays
    above it for ``HALF_STEP_SUSTAIN`` eV, interpolated (eV); None where there is none."""
    y = post_edge_normalize(energy, mu, about).mu  # NaN throughout where the step could not be scaled
    above = y >= level
    for i in np.flatnonzero(above & ~np.r_[False, above[:-1]]):
        # the first point at or past the sustain window counts too: a partial scan's coarse gap
        # after a pre-edge peak's fine points would otherwise hide its fall
        end = np.searchsorted(energy, energy[i] + HALF_STEP_SUSTAIN) + 1
        if above[i:end].all():
            if i == 0:
                return float(energy[0])
            e1, e2, y1, y2 = energy[i - 1], energy[i], y[i - 1], y[i]
            return float(e1 + (level - y1) * (e2 - e1) / (y2 - y1))
    return None


def steepest_rise(energy: np.ndarray, mu: np.ndarray, main_rise: bool = True) -> float:
    """The point of maximum derivative dmu/dE (eV), as xraylarch's ``find_e0``, taken on the main
    rise of the edge.

    Points within 5 % (at least 3 points) of either end are ignored, and the maximum must have both
    neighbours also above 10 % of the largest derivative, so single-point glitches are not taken.

    ``main_rise`` (False: the plain maximum, xraylarch's rule): a strong pre-edge peak (tetrahedral
    d0 ions: chromates, vanadates, Ti4+ in tetrahedra) can have a steeper flank than the edge
    itself, and then the plain maximum sits on the peak, 4-14 eV below the edge (179 of the 2,449
    project FEFF10 spectra). Where mu falls back below 30 % of the edge step (pre-edge level: mean
    of the first 10 % of points; post-edge: of the last 25 %) after the plain maximum, that maximum
    was a pre-edge feature, and the point is the maximum derivative above the last such point. A
    first step that does not fall back (a two-step edge) is left as it is. Returns NaN when fewer
    than 8 points are given.
    """
    energy = np.asarray(energy, float)
    mu = np.asarray(mu, float)
    if len(energy) < 8:
        return float("nan")
    dmu = np.gradient(mu) / np.gradient(energy)
    dmu[~np.isfinite(dmu)] = -1.0
    nmin = max(3, int(len(dmu) * 0.05))
    inner = dmu[nmin:-nmin]
    if not len(inner):
        return float("nan")
    high = dmu > inner.max() * 0.1
    ok = np.zeros_like(high)
    ok[1:-1] = high[1:-1] & high[:-2] & high[2:]
    idx = np.arange(len(dmu))
    ok &= (idx >= nmin) & (idx <= len(dmu) - nmin)
    if not ok.any():
        best = nmin + int(np.argmax(inner))
    else:
        cand = np.flatnonzero(ok)
        best = int(cand[np.argmax(dmu[cand])])
    if main_rise:
        n = len(mu)
        pre, post = np.nanmean(mu[: max(2, n // 10)]), np.nanmean(mu[-max(2, n // 4):])
        low = np.flatnonzero(mu < pre + 0.3 * (post - pre))
        if post > pre and len(low) and low[-1] > best and low[-1] < n - nmin:
            after = np.arange(n) > low[-1]
            pick = np.flatnonzero(after & (ok if ok[after].any() else (idx <= n - nmin)))
            if len(pick):
                best = int(pick[np.argmax(dmu[pick])])
    return float(energy[best])


def pre_edge_level(energy: np.ndarray, mu: np.ndarray, e0: float, below: float = 10.0) -> float:
    """Pre-edge level: the 10th percentile of mu more than ``below`` eV under E0, else the first point.

    ~0 for computed spectra (FEFF starts near the Fermi level), the sample/detector background for
    measured ones; subtracting it makes the two comparable. A low percentile rather than the mean:
    with E0 on the main rise, a strong pre-edge peak (tetrahedral d0 ions) lies in this region, and
    its mean would lift the level by up to half the edge step.
    """
    pre = mu[energy < e0 - below]
    return float(np.percentile(pre, 10)) if len(pre) else float(mu[0])


def post_edge_normalize(
    energy: np.ndarray, mu: np.ndarray, e0: float | None = None, offset: float = 50.0
) -> Normalized:
    """(mu - pre-edge level) / (its value at E0 + ``offset`` eV): the study's normalization.

    The pre-edge level (:func:`pre_edge_level`) is subtracted first. If E0 + offset lies beyond the
    measured range, the value at the highest measured energy is used instead and the result is
    marked ``confident=False``.
    """
    energy = np.asarray(energy, float)
    mu = np.asarray(mu, float)
    e0 = find_e0(energy, mu) if e0 is None else float(e0)
    if not np.isfinite(e0):
        return Normalized(energy, mu * np.nan, e0, float("nan"), "post_edge", False, "too few points to find the edge")
    pre = pre_edge_level(energy, mu, e0)
    target = e0 + offset
    if target <= energy[-1]:
        scale = float(np.interp(target, energy, mu)) - pre
        confident, reason = True, ""
    else:
        scale = float(mu[-1]) - pre
        confident = False
        reason = f"E0+{offset:g} eV ({target:.1f} eV) not measured yet; scaled by mu at {energy[-1]:.1f} eV"
    if not np.isfinite(scale) or scale <= 0:
        return Normalized(energy, mu * np.nan, e0, scale, "post_edge", False,
                          f"non-positive post-edge value {scale:.3g}")
    return Normalized(energy, (mu - pre) / scale, e0, scale, "post_edge", confident, reason)


def max_normalize(energy: np.ndarray, mu: np.ndarray, e0: float | None = None) -> Normalized:
    """(mu - pre-edge level) / its maximum (the alternative of the study)."""
    energy = np.asarray(energy, float)
    mu = np.asarray(mu, float)
    e0 = find_e0(energy, mu) if e0 is None else float(e0)
    pre = pre_edge_level(energy, mu, e0) if np.isfinite(e0) and len(mu) else 0.0
    scale = float(np.nanmax(mu)) - pre if len(mu) else float("nan")
    if not np.isfinite(scale) or scale <= 0:
        return Normalized(energy, mu * np.nan, e0, scale, "max", False, f"non-positive maximum {scale:.3g}")
    confident = bool(np.isfinite(e0) and energy[-1] >= e0 + 20.0)
    reason = "" if confident else "white line possibly not measured yet (less than E0+20 eV covered)"
    return Normalized(energy, (mu - pre) / scale, e0, scale, "max", confident, reason)


@dataclass(frozen=True)
class AthenaResult:
    """Output of :func:`athena_normalize`, named as xraylarch names them."""

    e0: float
    edge_step: float
    norm: np.ndarray
    pre_edge: np.ndarray
    post_edge: np.ndarray
    pre1: float
    pre2: float
    norm1: float
    norm2: float
    nnorm: int
    confident: bool = True
    reason: str = ""


def _index_of(energy: np.ndarray, value: float) -> int:
    """Index of the last point with energy <= value (larch's ``index_of``)."""
    if value < energy[0]:
        return 0
    return int(np.flatnonzero(energy <= value)[-1])


def _index_nearest(energy: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(energy - value)))


def athena_normalize(
    energy: np.ndarray,
    mu: np.ndarray,
    e0: float | None = None,
    pre1: float | None = None,
    pre2: float | None = None,
    norm1: float | None = None,
    norm2: float | None = None,
    nnorm: int | None = None,
    nvict: int = 0,
) -> AthenaResult:
    """Athena-convention pre-edge subtraction and edge-step normalization (energies in eV).

    Ranges are relative to E0 and default as in xraylarch's ``pre_edge`` (2026): ``pre1`` at the
    second point (rounded to 5 eV), ``pre2 = pre1 / 2``; ``norm2`` at the last point (rounded to
    5 eV), ``norm1 = min(25, norm2 / 15)``; ``nnorm`` 2 for >= 300 eV of post-edge, 1 for >= 30 eV,
    else 0. The pre-edge is a line in ``mu * E**nvict``; with fewer than 3 pre-edge points it is the
    mean (a constant). E0 defaults, as in Larch, to the steepest point of the rise
    (:func:`steepest_rise`); the models pass their own (:func:`find_e0`).
    """
    energy = np.asarray(energy, float)
    mu = np.asarray(mu, float)
    if len(energy) < 4:
        raise ValueError(f"need at least 4 points for pre-edge/post-edge normalization, got {len(energy)}")
    if e0 is None or not (energy[1] <= e0 <= energy[-2]):
        e0 = steepest_rise(energy, mu)
    e0 = float(e0)
    ie0 = _index_nearest(energy, e0)
    confident, reason = True, ""
    if pre1 is None:
        r = 5.0 if ie0 > 20 else 2.0
        pre1 = r * round((energy[1] - e0) / r)
    pre1 = max(pre1, energy.min() - e0)
    if pre2 is None:
        pre2 = 0.5 * pre1
    if pre1 > pre2:
        pre1, pre2 = pre2, pre1
    npre = 1
    if _index_of(energy - e0, pre2) - _index_of(energy - e0, pre1) < 3:
        npre, nvict = 0, 0
        confident, reason = False, "fewer than 3 pre-edge points: constant pre-edge"
    if norm2 is None:
        norm2 = 5.0 * round((energy.max() - e0) / 5.0)
    if norm2 < 0:
        norm2 = energy.max() - e0 - norm2
    norm2 = min(norm2, energy.max() - e0)
    if norm1 is None:
        norm1 = min(25.0, 5.0 * round(norm2 / 15.0))
    if norm1 > norm2:
        norm1, norm2 = norm2, norm1
    norm1 = min(norm1, norm2 - 2)
    if norm2 < 30.0:
        confident, reason = False, f"only {norm2:.0f} eV above E0 measured: post-edge line poorly determined"
    if nnorm is None:
        nnorm = 2 if norm2 - norm1 >= 300 else 1 if norm2 - norm1 >= 30 else 0
    nnorm = int(max(min(nnorm, 5), 0))
    p1, p2 = _index_of(energy, pre1 + e0), _index_nearest(energy, pre2 + e0)
    if npre == 0:
        p2 = p2 + 1 if p2 == p1 else p2
        pre_edge = np.full(len(energy), mu[p1:p2].mean())
    else:
        if p2 - p1 < 2:
            p2 = min(len(energy), p1 + 2)
        c = np.polynomial.polynomial.polyfit(energy[p1:p2], (mu * energy**nvict)[p1:p2], 1)
        pre_edge = (c[0] + energy * c[1]) * energy ** (-nvict)
    p1, p2 = _index_of(energy, norm1 + e0), _index_nearest(energy, norm2 + e0)
    p1 = min(p1, len(energy) - 3)
    if p2 - p1 < 2:
        p1, nnorm = p1 - 2, 0
        confident, reason = False, "post-edge range not measured: normalization extrapolated"
    elif p2 - p1 < 5:
        nnorm = min(1, nnorm)
    c = np.polynomial.polynomial.polyfit(energy[p1:p2], (mu - pre_edge)[p1:p2], nnorm)
    post_edge = pre_edge + np.polynomial.polynomial.polyval(energy, c)
    step = max(1e-12, abs(float(post_edge[ie0] - pre_edge[ie0])))
    norm = (mu - pre_edge) / step
    return AthenaResult(e0, step, norm, pre_edge, post_edge, float(pre1), float(pre2), float(norm1),
                        float(norm2), nnorm, confident, reason)


def normalize(energy: np.ndarray, mu: np.ndarray, method: str = "post_edge", e0: float | None = None) -> Normalized:
    """Normalize by name (one of :data:`NORMALIZATIONS`)."""
    if method == "post_edge":
        return post_edge_normalize(energy, mu, e0)
    if method == "max":
        return max_normalize(energy, mu, e0)
    if method == "athena":
        r = athena_normalize(energy, mu, e0)
        return Normalized(np.asarray(energy, float), r.norm, r.e0, r.edge_step, "athena", r.confident, r.reason)
    raise ValueError(f"unknown normalization {method!r}; choose one of {', '.join(NORMALIZATIONS)}")
