"""The partial spectrum a run has measured so far, rebuilt as points arrive in any order."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ..data.signals import Signal, choose_signal, find_energy

log = logging.getLogger(__name__)


#: Readings farther than this from the tabulated edge (eV) are not of this edge.
EDGE_WINDOW = 2000.0
#: Width (eV) of the bins readings are averaged in: finer than any step scan's spacing and than the
#: model grid's (0.5 eV), coarse enough that a 10 kHz fly scan's readings pile into bins instead of
#: growing a list. A bin's energy is the mean energy of its readings, so a step scan's points keep
#: their exact energies.
BIN_WIDTH = 0.1


@dataclass
class PartialSpectrum:
    """Accumulates (energy, mu) readings in fixed energy bins: memory and the cost of an update are
    bounded by the energy range, not by the number of readings.

    The bins (:data:`BIN_WIDTH` eV; sums of energy and mu and a count each) cover
    +-:data:`EDGE_WINDOW` eV around ``edge_energy`` (or around the first reading when no edge is
    given): 40,000 bins, 1 MB, whatever the scan. Adding a page is one vectorized pass over the
    page (no sort, nothing per point kept); :meth:`arrays` reads the filled bins in energy order.

    Every reading is judged on its own against ``edge_energy`` (eV, tabulated): within
    :data:`EDGE_WINDOW` of the edge it is taken as eV; if x1000 lands there instead it is keV sent by
    mistake and converted (``unit_note`` says how many); otherwise it is impossible for this edge
    (<= 0, 1e30, another edge's energies) and rejected (``n_rejected``). Non-finite pairs are
    dropped (``n_dropped``), and so are non-numeric values (``True`` as mu). Each kind is logged
    once per run; :meth:`summary` says how many in all. Nothing already added is ever lost.
    """

    edge_energy: float | None = None
    bin_width: float = BIN_WIDTH
    n_dropped: int = 0
    n_rejected: int = 0
    n_kev: int = 0
    n_readings: int = 0  # every reading kept, however many share a bin
    unit_note: str = ""
    _lo: float | None = None  # energy (eV) of the first bin's lower edge
    _sum_e: np.ndarray | None = None
    _sum_mu: np.ndarray | None = None
    _count: np.ndarray | None = None
    _filled: int = 0
    _cache: tuple[np.ndarray, np.ndarray] | None = None
    _logged: set = field(default_factory=set)

    def _once(self, kind: str, msg: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s (further ones are counted, not logged)", msg)

    def _allocate(self, centre: float) -> None:
        n = int(np.ceil(2 * EDGE_WINDOW / self.bin_width)) + 1
        self._lo = centre - EDGE_WINDOW
        self._sum_e, self._sum_mu, self._count = np.zeros(n), np.zeros(n), np.zeros(n, np.int64)

    def add(self, energy, mu) -> int:
        """Add readings (energies in eV, or keV by mistake; mu); returns how many were kept."""
        if type(energy) is float and type(mu) is float and self._count is not None:
            return self._add_one(energy, mu)  # one event of a fly scan: no arrays made
        e_in, m_in = np.atleast_1d(np.asarray(energy)), np.atleast_1d(np.asarray(mu))
        if e_in.shape != m_in.shape:
            raise ValueError(f"energy and mu readings differ in length ({e_in.shape} vs {m_in.shape})")
        if e_in.dtype.kind not in "iuf" or m_in.dtype.kind not in "iuf":
            self.n_rejected += len(e_in)
            self._once("type", f"rejected readings of non-numeric type (energy {e_in.dtype}, mu {m_in.dtype})")
            return 0
        e, m = e_in.astype(float).ravel(), m_in.astype(float).ravel()
        ok = np.isfinite(e) & np.isfinite(m)
        if not ok.all():
            self.n_dropped += int((~ok).sum())
            self._once("nan", f"dropped {int((~ok).sum())} non-finite reading(s)")
            e, m = e[ok], m[ok]
        if self.edge_energy:
            ev = np.abs(e - self.edge_energy) <= EDGE_WINDOW
            kev = ~ev & (np.abs(e * 1000.0 - self.edge_energy) <= EDGE_WINDOW)
            bad = ~(ev | kev)
            if kev.any():
                self.n_kev += int(kev.sum())
                self.unit_note = (f"{self.n_kev} energies looked like keV (edge {self.edge_energy:.1f} eV): "
                                  "converted to eV")
                self._once("kev", self.unit_note)
                e = np.where(kev, e * 1000.0, e)
        else:
            bad = e <= 0
            if self._lo is not None:  # no edge: the window around the first reading
                bad |= np.abs(e - (self._lo + EDGE_WINDOW)) > EDGE_WINDOW
        if bad.any():
            self.n_rejected += int(bad.sum())
            self._once("range", f"rejected {int(bad.sum())} reading(s) impossible for this edge "
                                f"(e.g. {e[bad][0]:.6g} eV; edge {self.edge_energy} eV)")
            e, m = e[~bad], m[~bad]
        if not len(e):
            return 0
        if self._count is None:
            self._allocate(self.edge_energy or float(e[0]))
        idx = ((e - self._lo) / self.bin_width).astype(np.int64)
        before = self._count[idx] == 0
        np.add.at(self._count, idx, 1)
        np.add.at(self._sum_e, idx, e)
        np.add.at(self._sum_mu, idx, m)
        if before.any():  # bins filled for the first time (a bin hit twice in this page counts once)
            self._filled += len(np.unique(idx[before]))
        self.n_readings += len(e)
        self._cache = None
        return len(e)

    def _add_one(self, e: float, m: float) -> int:
        # the scalar path of add(): the same judgement, reading by reading
        if not (math.isfinite(e) and math.isfinite(m)):
            return self.add(np.array([e]), np.array([m]))  # counted and logged there
        centre = self.edge_energy if self.edge_energy else self._lo + EDGE_WINDOW
        if abs(e - centre) > EDGE_WINDOW:
            return self.add(np.array([e]), np.array([m]))  # keV, or rejected: said there
        i = int((e - self._lo) / self.bin_width)
        if self._count[i] == 0:
            self._filled += 1
        self._count[i] += 1
        self._sum_e[i] += e
        self._sum_mu[i] += m
        self.n_readings += 1
        self._cache = None
        return 1

    def summary(self) -> str:
        """One line on what was not taken as it came, or ``""``."""
        parts = [f"{n} {what}" for n, what in ((self.n_dropped, "non-finite readings dropped"),
                                               (self.n_rejected, "impossible readings rejected"),
                                               (self.n_kev, "keV readings converted")) if n]
        return ", ".join(parts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Energies (eV, increasing: each filled bin's mean energy) and the mean mu in each bin."""
        if self._cache is None:
            if self._count is None:
                self._cache = (np.zeros(0), np.zeros(0))
            else:
                filled = np.flatnonzero(self._count)
                n = self._count[filled]
                self._cache = (self._sum_e[filled] / n, self._sum_mu[filled] / n)
        return self._cache

    def __len__(self) -> int:
        """Distinct energies (filled bins)."""
        return self._filled


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


def choose_fields(descriptor: dict, energy_field: str | None, mu_field: str | None,
                  detectors: dict[str, str | None]) -> tuple[str, Signal, str]:
    """(energy field, signal, what was guessed or "") for a primary-stream descriptor.

    Named fields win (and must exist). Otherwise energy is the data key in eV, else one named like
    an energy; mu is a mu field, else transmission (I0, It), else fluorescence (If, I0) by name
    (:func:`~xanes_agent.data.signals.choose_signal`), else the first hinted field as mu.
    Raises ValueError saying what is missing.
    """
    keys = descriptor.get("data_keys", {})
    names = list(keys)
    guesses = []
    if energy_field is None:
        energy_field, _ = stream_fields(descriptor)  # the key declared in eV: not a guess
        if energy_field is None:
            energy_field = find_energy(names)
            if energy_field is None:
                raise ValueError("no energy field (none in eV, none named like an energy)")
            guesses.append(f"energy taken from the field {energy_field!r} (no units declared: eV assumed)")
    elif energy_field not in keys:
        raise ValueError(f"energy field {energy_field!r} not in the stream")
    named = {k: v for k, v in detectors.items() if v is not None}
    if mu_field is not None:
        if mu_field not in keys:
            raise ValueError(f"mu field {mu_field!r} not in the stream")
        return energy_field, Signal("mu", (mu_field,)), ", ".join(guesses)
    try:
        signal, note = choose_signal(names, exclude=[energy_field], **named)
    except ValueError:
        if named:
            raise
        _, hinted = stream_fields(descriptor, energy_field)
        if hinted is None:
            raise
        signal, note = Signal("mu", (hinted,)), f"mu taken from the hinted field {hinted!r}"
    guesses += [note] if note else []
    return energy_field, signal, ", ".join(guesses)
