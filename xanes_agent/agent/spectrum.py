"""The partial spectrum a run has measured so far, rebuilt as points arrive in any order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class PartialSpectrum:
    """Accumulates (energy, mu) readings: sorted, duplicates averaged, non-finite dropped.

    ``edge_energy`` (eV, tabulated) lets it detect energies sent in keV by mistake: if the first
    readings are ~1000x below the edge and x1000 lands within 2 keV of it, all readings of the run
    are taken as keV, converted, and ``unit_note`` says so.
    """

    edge_energy: float | None = None
    resolution: float = 1e-3  # eV: readings closer than this are the same energy
    n_dropped: int = 0
    unit_scale: float | None = None
    unit_note: str = ""
    _sum: dict[int, float] = field(default_factory=dict)
    _count: dict[int, int] = field(default_factory=dict)

    def _detect_unit(self, energy: np.ndarray) -> None:
        if self.unit_scale is not None or not len(energy):
            return
        self.unit_scale = 1.0
        if self.edge_energy:
            med = float(np.median(energy))
            if abs(med - self.edge_energy) > 2000 and abs(med * 1000 - self.edge_energy) < 2000:
                self.unit_scale = 1000.0
                self.unit_note = (f"energies look like keV (median {med:.4f} vs edge {self.edge_energy:.1f} eV): "
                                  "converted to eV")
                log.warning(self.unit_note)

    def add(self, energy, mu) -> int:
        """Add readings; returns how many were kept. NaN/inf pairs are dropped and counted."""
        e = np.atleast_1d(np.asarray(energy, dtype=float))
        m = np.atleast_1d(np.asarray(mu, dtype=float))
        if e.shape != m.shape:
            raise ValueError(f"energy and mu readings differ in length ({e.shape} vs {m.shape})")
        ok = np.isfinite(e) & np.isfinite(m)
        if (~ok).any():
            self.n_dropped += int((~ok).sum())
            log.warning("dropped %d non-finite reading(s) (%d so far)", int((~ok).sum()), self.n_dropped)
        e, m = e[ok], m[ok]
        self._detect_unit(e)
        e = e * (self.unit_scale or 1.0)
        for k, v in zip(np.round(e / self.resolution).astype(np.int64), m):
            self._sum[int(k)] = self._sum.get(int(k), 0.0) + float(v)
            self._count[int(k)] = self._count.get(int(k), 0) + 1
        return int(ok.sum())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique energies (eV) and the mean mu at each."""
        if not self._sum:
            return np.zeros(0), np.zeros(0)
        keys = np.array(sorted(self._sum))
        mu = np.array([self._sum[k] / self._count[k] for k in keys])
        return keys * self.resolution, mu

    def __len__(self) -> int:
        return len(self._sum)


def stream_fields(descriptor: dict, energy_field: str | None = None,
                  mu_field: str | None = None) -> tuple[str | None, str | None]:
    """(energy field, mu field) of a descriptor: the given names, else the data key in eV and the
    first other hinted field (what ``xas.energy_field``/``xas.mu_field`` would have named)."""
    keys = descriptor.get("data_keys", {})
    if energy_field is None:
        energy_field = next((k for k, v in keys.items() if v.get("units") == "eV"), None)
    if mu_field is None:
        hinted = [f for h in (descriptor.get("hints") or {}).values() for f in h.get("fields", [])]
        mu_field = next((f for f in hinted if f in keys and f != energy_field), None)
    return energy_field, mu_field
