"""The in-memory types for spectra: one :class:`Spectrum`, and a labelled :class:`SpectrumCollection`.

Energies are absolute photon energies in eV, ``mu`` is the absorption in arbitrary units (FEFF's
``mu`` is already normalized to 1 at edge + 50 eV). Labels describe the absorbing site:

``coordination_number``  number of nearest neighbours (CrystalNN), dimensionless
``mean_nn_distance``     mean absorber-neighbour distance over those neighbours, Angstrom
``oxidation_state``      formal oxidation state of the absorber (by construction or bond valence),
                         a formal number without unit (not a charge)
``feff_charge_transfer`` electrons the absorber's Norman sphere gained in FEFF's converged SCF, e
                         (FEFF's sign: O sites come out positive, cations that gave electrons
                         negative, so a net-charge-like quantity is its negative; the absorber's
                         value includes the core hole's screening; only where the SCF converged)
``bader_charge``         Bader charge from a DFT density, e (only where the data really carry one)
``feff_ground_charge_transfer``  the same Norman-sphere count from FEFF's ground-state SCF (no core
                         hole: the RPA core-hole set's), e; another quantity than the one above

Missing labels are NaN: an oxidation state is never stored under ``bader_charge``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..foundation.properties import LABEL_NAMES


@dataclass
class Spectrum:
    """One absorption spectrum of one absorbing site.

    Attributes
    ----------
    energy : (n,) float array, absolute energy in eV, strictly increasing
    mu : (n,) float array, absorption (arbitrary units)
    element : absorbing element symbol, e.g. ``"Cu"``
    edge : absorption edge, e.g. ``"K"``
    labels : label name -> value (see module docstring for names and units)
    provenance : free-form JSON-serialisable description of where the spectrum came from
    structure : optional pymatgen ``Structure`` of the material
    """

    energy: np.ndarray
    mu: np.ndarray
    element: str
    edge: str = "K"
    labels: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    structure: Any = None
    id: str = ""

    def __post_init__(self) -> None:
        self.energy = np.asarray(self.energy, dtype=float)
        self.mu = np.asarray(self.mu, dtype=float)
        if self.energy.ndim != 1 or self.energy.shape != self.mu.shape:
            raise ValueError(
                f"spectrum {self.id or '?'}: energy and mu must be 1-D of equal length, "
                f"got {self.energy.shape} and {self.mu.shape}"
            )


def _object_array(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


@dataclass
class SpectrumCollection:
    """A labelled collection of spectra, stored column-wise so that filtering is one fancy index.

    ``energy`` and ``mu`` are object arrays of 1-D float arrays (spectra have their own native grids);
    every other column is a plain array of length ``len(self)``. ``labels`` maps each name in
    :data:`LABEL_NAMES` to a float array with NaN where the label is unknown.
    """

    ids: np.ndarray
    element: np.ndarray
    edge: np.ndarray
    energy: np.ndarray
    mu: np.ndarray
    labels: dict[str, np.ndarray]
    source: np.ndarray
    material_id: np.ndarray
    split: np.ndarray
    provenance: np.ndarray  # JSON strings, one per spectrum
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("element", "edge", "energy", "mu", "source", "material_id", "split", "provenance"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name!r} has {len(getattr(self, name))} rows, expected {n}")
        for name in LABEL_NAMES:
            self.labels.setdefault(name, np.full(n, np.nan))
            if len(self.labels[name]) != n:
                raise ValueError(f"label {name!r} has {len(self.labels[name])} rows, expected {n}")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_spectra(
        cls,
        spectra: Sequence[Spectrum],
        source: str | Sequence[str] = "user",
        split: str | Sequence[str] = "train",
        meta: Mapping[str, Any] | None = None,
    ) -> SpectrumCollection:
        n = len(spectra)
        src = [source] * n if isinstance(source, str) else list(source)
        spl = [split] * n if isinstance(split, str) else list(split)
        return cls(
            ids=np.array([s.id or f"spectrum-{i}" for i, s in enumerate(spectra)], dtype=str),
            element=np.array([s.element for s in spectra], dtype=str),
            edge=np.array([s.edge for s in spectra], dtype=str),
            energy=_object_array([s.energy for s in spectra]),
            mu=_object_array([s.mu for s in spectra]),
            labels={
                k: np.array([float(s.labels.get(k, np.nan)) for s in spectra]) for k in LABEL_NAMES
            },
            source=np.array(src, dtype=str),
            material_id=np.array(
                [str(s.provenance.get("material_id", s.id)) for s in spectra], dtype=str
            ),
            split=np.array(spl, dtype=str),
            provenance=np.array([json.dumps(s.provenance, sort_keys=True) for s in spectra], dtype=str),
            meta=dict(meta or {}),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[SpectrumCollection]) -> SpectrumCollection:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.from_spectra([])
        cat = np.concatenate
        meta: dict[str, Any] = {}
        for p in parts:
            meta.update(p.meta)
        return cls(
            ids=cat([p.ids for p in parts]),
            element=cat([p.element for p in parts]),
            edge=cat([p.edge for p in parts]),
            energy=cat([p.energy for p in parts]),
            mu=cat([p.mu for p in parts]),
            labels={k: cat([p.labels[k] for p in parts]) for k in LABEL_NAMES},
            source=cat([p.source for p in parts]),
            material_id=cat([p.material_id for p in parts]),
            split=cat([p.split for p in parts]),
            provenance=cat([p.provenance for p in parts]),
            meta=meta,
        )

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: Any) -> SpectrumCollection:
        """Row selection by boolean mask, integer array or slice; always returns a collection."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return SpectrumCollection(
            ids=self.ids[idx],
            element=self.element[idx],
            edge=self.edge[idx],
            energy=self.energy[idx],
            mu=self.mu[idx],
            labels={k: v[idx] for k, v in self.labels.items()},
            source=self.source[idx],
            material_id=self.material_id[idx],
            split=self.split[idx],
            provenance=self.provenance[idx],
            meta=dict(self.meta),
        )

    def spectrum(self, i: int) -> Spectrum:
        """Row ``i`` as a :class:`Spectrum`."""
        prov = json.loads(self.provenance[i]) if self.provenance[i] else {}
        labels = {k: float(v[i]) for k, v in self.labels.items() if np.isfinite(v[i])}
        return Spectrum(
            energy=self.energy[i], mu=self.mu[i], element=str(self.element[i]), edge=str(self.edge[i]),
            labels=labels, provenance=prov, id=str(self.ids[i]),
        )

    def __iter__(self) -> Iterator[Spectrum]:
        for i in range(len(self)):
            yield self.spectrum(i)

    def where(
        self,
        element: str | None = None,
        source: str | None = None,
        split: str | None = None,
        edge: str | None = None,
    ) -> SpectrumCollection:
        """Filter by exact column values; ``None`` means no constraint."""
        mask = np.ones(len(self), dtype=bool)
        for col, val in (("element", element), ("source", source), ("split", split), ("edge", edge)):
            if val is not None:
                mask &= getattr(self, col) == val
        return self[mask]

    @property
    def elements(self) -> list[str]:
        return sorted(set(self.element.tolist()))

    def index_of(self, spectrum_id: str) -> int:
        hits = np.flatnonzero(self.ids == spectrum_id)
        if not len(hits):
            raise KeyError(f"no spectrum with id {spectrum_id!r} in this collection")
        return int(hits[0])
