"""Proposal strategies: which not-yet-measured energy ranges to measure next.

Candidates are the 20 chunks that tile the model window (the finest polynomial chunks: 3 eV),
in absolute eV once E0 is known. Each strategy scores the candidates; the agent proposes the best.

``ImportanceUncertainty`` (default) scores a chunk by
    sum over properties p of  U_p * I_p(chunk) * (1 - covered fraction of the chunk)
where I_p(chunk) is the impurity importance of property p integrated over the chunk (importance of
each feature spread uniformly over its energy range, normalized to 1 over the window) and U_p is
the current uncertainty of p scaled to [0, 1]: 1 - P(predicted CN class), distance std / 0.05 A,
charge std / 0.25 e (clipped at 1), plus a small floor (0.05) so a confident property still
counts. Uncertain properties pull measurements to where their model looks.

``ImportanceOnly`` drops U_p (a fixed importance-ranked order); ``EnergyOrder`` proposes the next
uncovered chunk upward in energy (a conventional scan, the baseline); ``RandomOrder`` picks
uncovered chunks at random. New strategies subclass :class:`Strategy` and implement ``score``.

:func:`propose_refining` (what the agent calls) runs a strategy twice over: first at a coarse step
(1.5 eV, the coarsest that covers the grid) over chunks not yet covered, then, once the window is
covered, at the grid's own spacing over chunks not yet measured that densely.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..foundation.energies import chunk_energies
from ..foundation.properties import decides
from ..models.features import coverage_mask

UNCERTAINTY_SCALE = {"mean_nn_distance": 0.05, "charge": 0.25}
UNCERTAINTY_FLOOR = 0.05


@dataclass
class Proposal:
    """A range to measure: absolute energies in eV, point spacing in eV."""

    start: float
    stop: float
    step: float
    score: float
    strategy: str
    uid: str = ""

    def __post_init__(self) -> None:
        if not self.uid:
            self.uid = str(uuid.uuid4())

    def energies(self) -> np.ndarray:
        """Both ends and evenly spaced points between, no further apart than ``step`` (eV)."""
        return chunk_energies(self.start, self.stop, self.step)

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "step": self.step, "score": self.score,
                "strategy": self.strategy, "uid": self.uid}


def uncertainties(predictions: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per-property uncertainty in [0, 1] (see module docstring)."""
    out = {}
    for name, p in predictions.items():
        if "probability" in p:
            u = 1.0 - float(p["probability"])
        else:
            u = float(p["std"]) / UNCERTAINTY_SCALE.get(name, 0.25)
        out[name] = min(1.0, max(0.0, u)) + UNCERTAINTY_FLOOR
    return out


class Strategy:
    """Base class: subclasses implement :meth:`score` over candidate chunks."""

    name = "base"

    def __init__(self, n_chunks: int = 20, seed: int | None = None) -> None:
        self.n_chunks = n_chunks
        self.rng = np.random.default_rng(seed)

    def chunks(self, grid_energies: np.ndarray) -> np.ndarray:
        """(n_chunks, 2) bounds in eV relative to E0."""
        edges = np.linspace(grid_energies[0], grid_energies[-1], self.n_chunks + 1)
        return np.stack([edges[:-1], edges[1:]], axis=1)

    def covered_fraction(self, chunks: np.ndarray, grid_energies: np.ndarray, covered: np.ndarray) -> np.ndarray:
        out = np.zeros(len(chunks))
        for i, (lo, hi) in enumerate(chunks):
            inside = (grid_energies >= lo) & (grid_energies <= hi)
            out[i] = covered[inside].mean() if inside.any() else 1.0
        return out

    def score(self, chunks: np.ndarray, uncovered: np.ndarray, importance: dict[str, np.ndarray],
              uncertainty: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def propose(self, e0: float, grid_energies: np.ndarray, covered: np.ndarray, model: Any,
                predictions: dict[str, dict[str, Any]], n: int = 1, step: float | None = None) -> list[Proposal]:
        """Up to ``n`` proposals for uncovered chunks, best first; none when all are covered."""
        chunks = self.chunks(grid_energies)
        uncovered = 1.0 - self.covered_fraction(chunks, grid_energies, covered)
        # a property that does not decide (foundation.properties.Property.decides) steers nothing
        importance = {name: chunk_importance(model, chunks, name) for name in model.properties
                      if decides(name)}
        s = np.where(uncovered > 0.05, self.score(chunks, uncovered, importance, uncertainties(predictions)), -np.inf)
        order = [i for i in np.argsort(-s, kind="stable") if np.isfinite(s[i])][:n]
        step = step or float(grid_energies[1] - grid_energies[0])
        return [Proposal(float(e0 + chunks[i, 0]), float(e0 + chunks[i, 1]), step, float(s[i]), self.name)
                for i in order]


def propose_refining(strategy: Strategy, e0: float, energies: np.ndarray, model: Any,
                     predictions: dict[str, dict[str, Any]], n: int = 1, step: float | None = 1.5) -> list[Proposal]:
    """Coarse, then fine: proposals at ``step`` eV for chunks the measured ``energies`` (eV,
    absolute) do not yet cover; once the whole window is covered, proposals at the model grid's own
    spacing for chunks not yet measured that densely (where the finer sampling still moves the
    features). Empty when the window is measured at grid density."""
    g = model.grid.energies
    rel = np.sort(np.asarray(energies, float) - e0)
    props = strategy.propose(e0, g, coverage_mask(rel, model.grid), model, predictions, n=n, step=step)
    fine_step = float(g[1] - g[0])
    if props or step is None or step <= fine_step:
        return props
    dense = coverage_mask(rel, model.grid, max_gap=1.2 * fine_step)
    return strategy.propose(e0, g, dense, model, predictions, n=n, step=fine_step)


def chunk_importance(model: Any, chunks: np.ndarray, prop: str) -> np.ndarray:
    """Importance of ``prop`` integrated over each chunk (sums to ~1 over the window)."""
    fine = np.linspace(chunks[0, 0], chunks[-1, 1], 1001)
    dens = model.importance_map(fine, prop)
    step = fine[1] - fine[0]
    out = np.array([dens[(fine >= lo) & (fine < hi)].sum() * step for lo, hi in chunks])
    return out / max(out.sum(), 1e-12)


class ImportanceUncertainty(Strategy):
    name = "importance_uncertainty"

    def score(self, chunks, uncovered, importance, uncertainty):
        total = np.zeros(len(chunks))
        for name, imp in importance.items():
            total += uncertainty.get(name, 1.0) * imp
        return total * uncovered


class ImportanceOnly(Strategy):
    name = "importance_only"

    def score(self, chunks, uncovered, importance, uncertainty):
        return sum(importance.values()) * uncovered


class EnergyOrder(Strategy):
    name = "energy_order"

    def score(self, chunks, uncovered, importance, uncertainty):
        return -np.arange(len(chunks), dtype=float)  # lowest uncovered chunk first


class RandomOrder(Strategy):
    name = "random"

    def score(self, chunks, uncovered, importance, uncertainty):
        return self.rng.random(len(chunks))


STRATEGIES = {cls.name: cls for cls in (ImportanceUncertainty, ImportanceOnly, EnergyOrder, RandomOrder)}


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**kwargs)
