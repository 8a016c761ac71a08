"""The adaptive policy: what to measure next, and when to stop. Pure: no I/O, no plans, no models.

One small state machine, driven alike by the in-process plan
(:func:`~xanes_agent.plans.adaptive.adaptive_xanes_scan`), the queue-server suggester
(:class:`~xanes_agent.agent.queue.QueueSuggester`) and ``benchmarks/points_to_decision.py``:

1. **survey**: a coarse pass around the tabulated edge (default 6 eV steps from edge - 30 eV to
   edge + 60 eV: where computed and measured K edges of the 3d metals lie, with the pre-edge level
   below them; beyond the model window's end only the normalization point is needed, and it has
   its own pass);
2. **edge**: ``edge_step`` eV steps over +-``edge_halfwidth`` eV around the steepest coarse
   interval (:func:`coarse_edge`), so E0 and the model window are placed to sub-eV precision;
   if the steepest point of the main rise (``steepest_rise``) then lies outside the fine points (the steepest coarse
   interval was a strong pre-edge peak, as in tetrahedral Ti4+, V5+ or Cr6+), another fine pass
   is centred on it; and where E0 itself (``find_e0``, where the main rise crosses half the step:
   the models' reference) lies between points further apart than ``FINE_SPACING`` (on a two-step
   edge the first step can cross half the step in a coarse gap below or above the fine points), a
   pass is centred on it (:meth:`AdaptivePolicy.half_step_pass`; at most ``MAX_EDGE_PASSES`` in
   all). Until session 24 four more rules looked for the steepest step of two-step edges, which
   was E0 then; with E0 at half the step the pass on E0 gives the full scan's E0 on those edges
   with fewer points (points-to-decision, docs/benchmarks.md);
3. **normalization**: one point at E0 + 50 eV, where the post-edge normalization takes its value
   (measured there, not interpolated across the survey's coarse steps);
4. **proposals**: the agent's next ``batch_size`` ranges (importance x calibrated uncertainty),
   each measured on one lattice of its step that starts at the survey's first energy (widened to
   the lattice points at or just outside the range:
   :func:`~xanes_agent.foundation.energies.lattice_energies`), without the energies already
   measured, until a stop rule holds; where points measured so move the steepest point of the rise
   off the fine points (a proposal on a strong pre-edge peak) and the agent no longer locates the
   edge, a fine pass on it comes first (:meth:`AdaptivePolicy.edge_recheck`). The survey step is a
   multiple of the agent's 1.5 eV proposal step, so the survey points inside the window are lattice points and
   neighbouring proposals share their ends: the window's coarse cover costs about 1 / 1.5 eV less
   the survey's share, instead of 0.8 new points per eV for 2.5 eV ranges each measured on its own.

Stop rules, checked before every proposal (:meth:`AdaptivePolicy.observe`): confident
(:func:`~.stopping.stop_reason`: in domain, calibrated CN probability and interval half-widths
within the thresholds), stable (:func:`~.stopping.stable_reason`: window covered, the last
decisions agree, the CN a decision; or, as many agreeing below that, settled with the CN undecided; or,
from 80 % of the window, more of them agreeing at the confident probability),
the point budget, the time budget, the last proposals measured nothing new, nothing left to propose.

A driver calls :meth:`AdaptivePolicy.next` with everything measured so far and the agent's report,
measures what it returns (a list of :class:`Measure`), tells the agent, and calls again until it
gets a :class:`Stop`. Without the opening passes (``opening=False``: the queue server runs the
survey as its own plan) a policy whose edge is not located yet asks for the survey again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..foundation.energies import lattice_energies, range_energies
from ..foundation.normalization import find_e0, steepest_rise
from .stopping import DEFAULT_STABILITY, DEFAULT_THRESHOLDS, cn_probability, decision_of, stable_reason, stop_reason

DEFAULT_SURVEY = (-30.0, 60.0, 6.0)  # eV relative to the tabulated edge: start, stop, step (4 x 1.5 eV)
# eV either side of the coarse edge, measured in edge_step steps (the rechecks add passes where
# the edge lies outside them). 4 rather than 5: 2-3 points fewer with the same CN at the stop for
# every element (points-to-decision, 60 held-out spectra per element, session 24, with session 23's
# rechecks: median share of the scan at the stop Ti..Ni 24.7-25.3 % -> 23.7-24.9 %); 3 saved 2 more,
# but then put E0 3 eV low on a two-step edge whose first step plateaus at half the step
DEFAULT_EDGE_HALFWIDTH = 4.0
# eV: the post-edge normalization point E0 + 50, measured once. Three points at +-1 eV (sessions 9-23)
# gave the same CN at the stop and the same distance error for every element, 2 points later
# (points-to-decision, 60 held-out spectra per element with counting noise, session 24: median share
# of the scan at the stop 22.0-25.3 % -> 21.2-24.5 %); 5 at 0.5 eV had given the same as 3 (session 9)
NORM_OFFSET = 50.0
SAME_POINT = 0.2  # eV: a planned energy this close to a measured one is not measured again
MAX_EDGE_PASSES = 3  # fine passes at most before the normalization pass
FINE_SPACING = 1.5  # eV: E0 counts as measured finely when its neighbours are this close (the agent's rule)


@dataclass(frozen=True)
class Measure:
    """Measure ``energies`` (eV, in this order). ``kind``: survey, edge, normalization or proposal;
    ``info``: what the plan records in its ``decisions`` stream (the range, or the proposal with its
    uid and score); ``uid``: the proposal's uid, to tell the agent with the readings."""

    kind: str
    energies: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    uid: str | None = None


@dataclass(frozen=True)
class Stop:
    """Stop measuring, because ``reason`` (recorded in the decisions stream and the stop document)."""

    reason: str


def coarse_edge(energies: Sequence[float], mu: Sequence[float]) -> float:
    """Centre (eV) of the steepest rise between consecutive points: the true edge lies within half
    a survey step of it (a max-derivative *point* can be a whole step off). NaN for < 3 points."""
    e = np.asarray(energies, float)
    m = np.asarray(mu, float)
    ok = np.isfinite(e) & np.isfinite(m)
    e, m = e[ok], m[ok]
    order = np.argsort(e)
    e, m = e[order], m[order]
    if len(e) < 3:
        return float("nan")
    slope = np.diff(m) / np.maximum(np.diff(e), 1e-9)
    i = int(np.argmax(slope))
    return float(0.5 * (e[i] + e[i + 1]))


def new_energies(planned: np.ndarray, measured: np.ndarray, tol: float = SAME_POINT) -> np.ndarray:
    """``planned`` (eV) without the energies within ``tol`` eV of one ``measured`` already."""
    planned = np.asarray(planned, float)
    measured = np.asarray(measured, float)
    if not len(measured) or not len(planned):
        return planned
    ref = np.sort(measured)
    i = np.searchsorted(ref, planned)
    below, above = ref[np.clip(i - 1, 0, len(ref) - 1)], ref[np.clip(i, 0, len(ref) - 1)]
    return planned[np.minimum(np.abs(planned - below), np.abs(planned - above)) > tol]


def _finely_bracketed(e: np.ndarray, i: int) -> bool:
    """Whether the point at index ``i`` of sorted ``e`` (eV) has neighbours within ``FINE_SPACING``."""
    return 0 < i < len(e) - 1 and e[i + 1] - e[i - 1] <= 2 * FINE_SPACING


class AdaptivePolicy:
    """See the module docstring. Energies in eV; ``thresholds``/``stability`` update
    :data:`~.stopping.DEFAULT_THRESHOLDS`/:data:`~.stopping.DEFAULT_STABILITY` (a dict given
    replaces only the keys it has).

    Parameters
    ----------
    edge_energy : float
        The tabulated edge (eV) the survey is placed around.
    survey : (start, stop, step)
        The survey pass, eV relative to ``edge_energy``.
    edge_halfwidth, edge_step : float
        The edge pass: +-``edge_halfwidth`` eV around the coarse edge in ``edge_step`` eV steps.
    opening : bool
        Whether this policy measures the survey, edge and normalization passes itself.
    batch_size : int
        Ranges asked of the agent per step.
    max_points, max_time : int, float or None
        Point budget (distinct energies) and time budget (s).
    thresholds : dict, optional
        Confident-stop thresholds: ``cn_probability``, ``distance_std`` (A), ``charge_std``.
    stability : dict, optional
        Stable-stop rule: ``updates`` that must agree, within ``distance`` (A) and ``charge``,
        at a CN probability of at least ``cn_probability``, once ``coverage`` of the window is
        measured; ``undecided_updates`` below that probability; ``early_updates`` from
        ``early_coverage`` at ``early_cn_probability`` (:data:`~.stopping.DEFAULT_STABILITY`).
    """

    def __init__(self, edge_energy: float, *, survey: Sequence[float] = DEFAULT_SURVEY,
                 edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH, edge_step: float = 0.5, opening: bool = True,
                 batch_size: int = 1, max_points: int = 250, max_time: float | None = None,
                 thresholds: dict[str, float] | None = None, stability: dict[str, float] | None = None) -> None:
        self.edge_energy = float(edge_energy)
        self.survey = tuple(float(v) for v in survey)
        self.edge_halfwidth = float(edge_halfwidth)
        self.edge_step = float(edge_step)
        self.batch_size = int(batch_size)
        self.max_points = int(max_points)
        self.max_time = max_time
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self.stability = {**DEFAULT_STABILITY, **(stability or {})}
        self.phase = "survey" if opening else "proposals"
        self.opening = opening
        self.decisions: list[tuple | None] = []  # the decision observed before each proposal step
        self.edge_centre: float | None = None  # eV, the coarse edge of the survey
        self.stopped = ""
        self.edge_passes = 0
        self.relocations = 0  # fine passes after the opening, where later points moved the edge off them
        self._n_at_proposal: int | None = None  # points measured when the last proposals were made
        self.lattice_origin = self.edge_energy + self.survey[0]  # eV: proposals' points lie on its lattice

    # -- the opening passes ----------------------------------------------------------------------
    def survey_pass(self) -> Measure:
        lo, hi, step = self.survey
        return Measure("survey", range_energies(self.edge_energy + lo, self.edge_energy + hi, step),
                       {"energies": [self.edge_energy + lo, self.edge_energy + hi, step]})

    def edge_pass(self, energies: np.ndarray, mu: np.ndarray) -> Measure:
        e_c = coarse_edge(energies, mu)
        self.edge_centre = e_c if np.isfinite(e_c) else self.edge_energy
        h = self.edge_halfwidth
        # a contiguous fine pass, survey points inside it included: the edge is measured in one sweep
        return Measure("edge", range_energies(self.edge_centre - h, self.edge_centre + h, self.edge_step),
                       {"centre": self.edge_centre, "halfwidth": h, "step": self.edge_step})

    def edge_recheck(self, energies: np.ndarray, mu: np.ndarray) -> Measure | None:
        """Another fine pass centred on the steepest point of the main rise if the passes so far do
        not bracket it finely (``FINE_SPACING``), else one on E0 if they do not bracket that
        (:meth:`half_step_pass`); None when they bracket both."""
        e = np.asarray(energies, float)
        m = np.asarray(mu, float)
        order = np.argsort(e)
        e, m = e[order], m[order]
        e0 = steepest_rise(e, m)
        if not np.isfinite(e0):
            return None
        i = int(np.searchsorted(e, e0))
        if _finely_bracketed(e, i):
            return self.half_step_pass(e, m)
        h = self.edge_halfwidth
        self.edge_centre = float(e0)
        return self._fine_pass(e, e0 - h, e0 + h,
                               "E0 of the main rise lies outside the fine points (a pre-edge peak was steeper)")

    def half_step_pass(self, e: np.ndarray, m: np.ndarray) -> Measure | None:
        """A fine pass centred on E0 (:func:`find_e0`: where the main rise crosses half the edge
        step, the models' reference) when the points around it are further apart than
        ``FINE_SPACING`` (sorted ``e``, ``m``): the steepest point is measured finely, but a first
        step crossed half the step in a coarse gap below or above it. None otherwise."""
        e0 = find_e0(e, m)
        if not np.isfinite(e0) or _finely_bracketed(e, int(np.searchsorted(e, e0))):
            return None
        h = self.edge_halfwidth
        return self._fine_pass(e, e0 - h, e0 + h, "E0 (half the edge step) lies between coarse points")

    def _fine_pass(self, e: np.ndarray, lo: float, hi: float, why: str) -> Measure:
        """A fine pass (``edge_step`` eV) over ``lo``..``hi`` eV, without the energies ``e`` already
        measured; its centre and half-width are recorded with ``why``."""
        return Measure("edge", new_energies(range_energies(lo, hi, self.edge_step), e),
                       {"centre": float(0.5 * (lo + hi)), "halfwidth": float(0.5 * (hi - lo)),
                        "step": self.edge_step, "why": why})

    @property
    def in_opening(self) -> bool:
        """Whether the opening passes (survey, edge, normalization) are still to come."""
        return self.phase != "proposals" and not self.stopped

    def normalization_pass(self, energies: np.ndarray, mu: np.ndarray) -> Measure:
        order = np.argsort(energies)
        e0 = find_e0(np.asarray(energies, float)[order], np.asarray(mu, float)[order])  # NaN for < 8 points
        if not np.isfinite(e0):
            e0 = self.edge_centre if self.edge_centre is not None else self.edge_energy
        c = e0 + NORM_OFFSET
        return Measure("normalization", np.array([c]), {"e0": e0, "centre": c})

    # -- the loop --------------------------------------------------------------------------------
    def observe(self, report: dict[str, Any], n_points: int, elapsed: float = 0.0) -> Stop | None:
        """Record the agent's current answer and check every stop rule; a :class:`Stop` if one holds."""
        self.decisions.append(decision_of(report))
        reason = stop_reason(report, self.thresholds) or stable_reason(
            self.decisions, report.get("coverage", 0.0), self.stability, cn_probability(report))
        if not reason and n_points >= self.max_points:
            reason = f"point budget reached ({n_points} >= {self.max_points})"
        if not reason and self.max_time is not None and elapsed > self.max_time:
            reason = f"time budget reached ({self.max_time} s)"
        if not reason and self._n_at_proposal is not None and n_points <= self._n_at_proposal:
            reason = "nothing new measured by the last proposals (repeated energies)"
        return self._stop(reason) if reason else None

    def propose(self, report: dict[str, Any], energies: np.ndarray,
                suggest: Callable[[int], list[dict[str, Any]]]) -> list[Measure] | Stop:
        """The next proposals from ``suggest(batch_size)`` (the agent's), as measures of the
        energies not yet measured, within the point budget."""
        if not report.get("edge_located"):
            if self.opening:
                return self._stop("edge not located after the survey and edge passes; no proposal")
            return [self.survey_pass()]  # the queue runs it as its own plan
        proposals = suggest(self.batch_size)
        if not proposals:
            return self._stop("nothing left to propose (model window covered)")
        self._n_at_proposal = len(energies)
        budget = self.max_points - len(energies)
        done = np.asarray(energies, float)
        out = []
        for p in proposals:
            es = new_energies(lattice_energies(p["start"], p["stop"], p["step"], self.lattice_origin),
                              done)[:max(budget, 0)]
            budget -= len(es)
            done = np.concatenate([done, es])
            out.append(Measure("proposal", es, dict(p), uid=p.get("uid")))
        if not any(len(m.energies) for m in out):
            return self._stop("nothing new to measure (proposals repeat measured points)")
        return out

    def next(self, energies: np.ndarray, mu: np.ndarray, report: dict[str, Any] | None = None,
             suggest: Callable[[int], list[dict[str, Any]]] | None = None,
             elapsed: float = 0.0) -> list[Measure] | Stop:
        """What to do after what is measured so far (``energies`` in eV, ``mu``) and the agent's
        ``report``; ``suggest`` is the agent's ``suggest``. See the module docstring."""
        if self.stopped:
            return Stop(self.stopped)
        energies = np.asarray(energies, float)
        mu = np.asarray(mu, float)
        if self.phase == "survey":
            self.phase = "edge"
            return [self.survey_pass()]
        if self.phase == "edge":
            self.phase = "normalization"
            self.edge_passes = 1
            return [self.edge_pass(energies, mu)]
        if self.phase == "normalization":
            again = self.edge_recheck(energies, mu) if self.edge_passes < MAX_EDGE_PASSES else None
            if again is not None and len(again.energies):
                self.edge_passes += 1
                return [again]
            self.phase = "proposals"
            return [self.normalization_pass(energies, mu)]
        stop = self.observe(report or {}, len(energies), elapsed)
        if stop is not None:
            return stop
        if self.opening and not (report or {}).get("edge_located") and self.relocations < MAX_EDGE_PASSES:
            # the edge was located after the opening passes, and points measured since moved the
            # steepest point of the rise off the fine points (a proposal on a strong pre-edge peak:
            # tetrahedral Ti4+): measure it finely, as the opening would have, instead of stopping
            # without an answer (1 of 60 held-out Ti spectra did, points-to-decision, session 38)
            again = self.edge_recheck(energies, mu)
            if again is not None and len(again.energies):
                self.relocations += 1
                return [again]
        if suggest is None:
            raise ValueError("the proposal phase needs the agent's suggest")
        return self.propose(report or {}, energies, suggest)

    def _stop(self, reason: str) -> Stop:
        self.stopped = reason
        return Stop(reason)
