"""Samples the simulator replays: a spectrum mu(E) on absolute energies (eV) and its labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.collection import SpectrumCollection


@dataclass
class Sample:
    """A replayable sample. ``energy`` absolute (eV, increasing), ``mu`` normalized absorption.

    ``computed``: a computed spectrum (FEFF), which starts at the Fermi level; False for a measured
    one (a two-column file).
    """

    id: str
    element: str
    edge: str
    energy: np.ndarray
    mu: np.ndarray
    labels: dict[str, float] = field(default_factory=dict)
    source: str = ""
    computed: bool = True

    def mu_at(self, energy: float | np.ndarray) -> np.ndarray:
        """Normalized mu at ``energy`` (eV). Below the first point: 0 for a computed spectrum (no
        empty states below the Fermi level, as :func:`~xanes_agent.models.features.extend_below_fermi`
        has it for the models), the first value for a measured one (a flat pre-edge); above the last
        point the mean of the last five (a flat post-edge)."""
        e = np.asarray(energy, float)
        post = float(np.mean(self.mu[-5:]))
        below = 0.0 if self.computed else float(self.mu[0])
        return np.interp(e, self.energy, self.mu, left=below, right=post)


def sample_from_library(lib: SpectrumCollection, sample_id: str | None = None, element: str | None = None,
                        split: str | None = None, rng: np.random.Generator | int | None = None,
                        **label_equals: float) -> Sample:
    """Choose by id, or at random among rows matching ``element``, ``split`` and labels
    (e.g. ``coordination_number=4``)."""
    if sample_id is not None:
        i = lib.index_of(sample_id)
    else:
        sub_mask = np.ones(len(lib), bool)
        if element is not None:
            sub_mask &= lib.element == element
        if split is not None:
            sub_mask &= lib.split == split
        for k, v in label_equals.items():
            if k not in lib.labels:
                raise ValueError(f"unknown label {k!r}; known: {', '.join(lib.labels)}")
            sub_mask &= np.isclose(lib.labels[k], v)
        idx = np.flatnonzero(sub_mask)
        if not len(idx):
            raise ValueError(f"no sample matches element={element} split={split} {label_equals}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        i = int(rng.choice(idx))
    s = lib.spectrum(i)
    return Sample(id=s.id, element=s.element, edge=s.edge, energy=s.energy, mu=s.mu, labels=s.labels,
                  source=str(lib.source[i]))


def sample_from_file(path: str | Path, element: str | None = None) -> Sample:
    """A FEFF ``xmu.dat``, Materials Project JSON or two-column file (absolute energies, eV)."""
    from ..data.readers import read_spectrum

    s = read_spectrum(path, element=element)
    fmt = s.provenance.get("format", "file")
    return Sample(id=str(path), element=s.element, edge=s.edge, energy=s.energy, mu=s.mu, labels=s.labels,
                  source=fmt, computed=fmt != "two-column")


def sample_from_structure(path: str | Path, element: str, cache_dir: str | Path = ".cache/feff",
                          site: int | None = None, params: Any = None) -> Sample:
    """Compute the spectrum of a CIF/POSCAR structure with FEFF10 (cached) and label its site.

    ``params`` is a :class:`~xanes_agent.data.feff.FeffParameters` (default: the library's set).
    """
    from pymatgen.core import Structure

    from ..data.feff import LIBRARY_PARAMETERS, feff_input, run_feff
    from ..data.labels import site_labels

    st = Structure.from_file(str(path))
    if site is None:
        site = next((i for i, x in enumerate(st) if x.specie.symbol == element), None)
        if site is None:
            raise ValueError(f"{path}: no {element} site in {st.composition.reduced_formula}")
    res = run_feff(feff_input(st, site, params or LIBRARY_PARAMETERS, title=str(path)), cache_dir)
    if not res.ok:
        raise ValueError(f"{path}: FEFF10 calculation left out: {res.reason}")
    return Sample(id=f"{Path(path).name}#{site}", element=element, edge="K", energy=res.energy, mu=res.mu,
                  labels={**site_labels(st, site), "feff_charge_transfer": res.charge_transfer},
                  source="feff10-on-demand")
