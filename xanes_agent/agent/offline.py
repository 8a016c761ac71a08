"""Predictions on whole measured spectra (``xanes-agent predict``): the agent's own predictor, no scan.

:func:`predict_measured` takes a :class:`~xanes_agent.data.measured.MeasuredSpectrum`, decides the
absorber (given, from the file's metadata, or guessed from the edge position, and says which) and
how mu is formed (given, or chosen from the column names, and says which), and returns a plain
JSON-safe record: predictions with calibrated intervals and probabilities, the model window's
coverage, the domain flag and the E0 used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.measured import MeasuredSpectrum
from ..data.signals import Signal, find_element
from ..foundation.edges import ELEMENTS, edge_energy
from ..foundation.normalization import find_e0
from .store import ModelStore

#: An edge is taken as an element's K edge when the steepest rise lies within this many eV of the
#: tabulated energy (chemical shifts in oxides are < 20 eV; the 3d K edges are > 500 eV apart).
GUESS_WINDOW_EV = 60.0


def guess_element(energy: np.ndarray, mu: np.ndarray) -> str | None:
    """The study element whose K edge is nearest the steepest rise of ``mu`` (within
    :data:`GUESS_WINDOW_EV`), or None."""
    ok = np.isfinite(energy) & np.isfinite(mu)
    if ok.sum() < 8:
        return None
    e0 = find_e0(energy[ok], mu[ok])
    best = min(ELEMENTS, key=lambda el: abs(edge_energy(el) - e0))
    return best if abs(edge_energy(best) - e0) <= GUESS_WINDOW_EV else None


@dataclass
class Prepared:
    """A measured spectrum ready for a model: usable points, how mu was formed, the absorber and
    how it was found, and notes for the user."""

    energy: np.ndarray
    mu: np.ndarray
    signal: Signal
    element: str
    element_from: str
    notes: list[str]


def prepare(ms: MeasuredSpectrum, element: str | None = None, signal: dict[str, Any] | None = None) -> Prepared:
    """Form mu (given fields, else by name) and decide the absorber (given, else the file's, else
    guessed from the edge position). Raises ValueError naming what is missing."""
    sig, note = ms.signal(**(signal or {}))
    mu = ms.mu(sig)
    notes = [n for n in (note, ms.energy_note) if n]
    ok = np.isfinite(mu) & np.isfinite(ms.energy)
    if ok.sum() < 8:
        raise ValueError(f"{ms.name}: fewer than 8 usable points after forming mu ({sig.describe()})")
    if ok.sum() < len(mu):
        notes.append(f"{len(mu) - ok.sum()} points with non-finite or non-physical values dropped")
    energy, mu = ms.energy[ok], mu[ok]
    how = "given"
    if element is None:
        element, key = find_element(ms.meta)
        how = f"file field {key}"
    if element is None:
        element = guess_element(energy, mu)
        how = "guessed from the edge position"
        if element is None:
            raise ValueError(f"{ms.name}: no element in the file and no K edge of {', '.join(ELEMENTS)} near its "
                             "steepest rise; give --element")
        notes.append(f"element {element} guessed from the edge position")
    return Prepared(energy, mu, sig, element, how, notes)


def predict_measured(ms: MeasuredSpectrum, store: ModelStore, element: str | None = None, edge: str | None = None,
                     signal: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record for ``ms`` (see the module docstring). Raises ValueError naming what is missing."""
    prep = prepare(ms, element, signal)
    energy, mu, sig, element = prep.energy, prep.mu, prep.signal, prep.element
    how, notes = prep.element_from, prep.notes
    edge = edge or ms.edge or "K"
    predictor = store.predictor(element)
    if predictor is None:
        raise ValueError(f"{ms.name}: no usable model for {element}: {store.errors.get(element, '')}".rstrip(": "))
    if edge != predictor.model.edge:
        raise ValueError(f"{ms.name}: {element} {edge}-edge data, but the model is for the {predictor.model.edge} edge")
    tab = edge_energy(element, edge)
    if not (energy.min() - 200 < tab < energy.max() + 200):
        raise ValueError(f"{ms.name}: energies {energy.min():.0f}-{energy.max():.0f} eV do not reach the "
                         f"{element} {edge} edge at {tab:.0f} eV (wrong element, or energy not in eV?)")
    state = predictor.update(energy, mu)
    rec: dict[str, Any] = {
        "name": ms.name, "format": ms.format, "element": element, "element_from": how, "edge": edge,
        "signal": sig.describe(), "n_points": int(len(energy)),
        "energy_range": [float(energy.min()), float(energy.max())],
        "e0": state.e0, "edge_located": state.edge_located, "coverage": state.coverage_fraction,
        "normalization_note": state.normalization_note, "notes": notes,
        "charge_label": predictor.model.properties["charge"].label if "charge" in predictor.model.properties else None,
        "predictions": {},
    }
    if not state.edge_located:
        rec["notes"].append(f"no prediction: {state.normalization_note}")
        return rec
    for name, p in state.predictions.items():
        rec["predictions"][name] = {k: _plain(v) for k, v in p.items()}
    first = next(iter(state.predictions.values()), {})
    rec["in_domain"] = bool(first.get("in_domain", True))
    rec["domain_score"] = _plain(first.get("domain_score", float("nan")))
    rec["domain_far"] = bool(first.get("domain_far", not rec["in_domain"]))
    rec["domain_trees_disagree"] = bool(first.get("domain_trees_disagree", False))
    rec["calibrated"] = bool(first.get("calibrated", False))
    return rec


def _plain(v: Any) -> Any:
    a = np.asarray(v)
    if a.ndim == 0:
        x = a.item()
        return float(x) if isinstance(x, (float, np.floating)) else x
    return a.tolist()


__all__ = ["GUESS_WINDOW_EV", "Prepared", "guess_element", "predict_measured", "prepare"]
