"""ophyd devices of the simulated beamline.

``EnergyAxis``: the monochromator energy (eV), ophyd's ``SynAxis`` with travel limits, an optional
move time and units in ``describe()``.

``TransmissionDetector``: ion chambers before (``i0``) and after (``it``) the sample and
``mu = ln(i0 / it)``. At energy E the expected counts are ``i0 = flux * dwell`` and
``it = i0 * exp(-(background + edge_step * mu_sample(E + calibration_offset)))``, each drawn from
a Poisson distribution with a seeded generator; ``mu`` is hinted.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.sim import SynAxis
from ophyd.status import StatusBase
from ophyd.utils import LimitError

from .samples import Sample


class EnergyAxis(SynAxis):
    """Monochromator energy in eV, with limits (``LimitError`` outside) and optional move time."""

    def __init__(self, *, name: str, limits: tuple[float, float] = (4000.0, 30000.0), delay: float = 0.0,
                 value: float = 9000.0, **kwargs: Any) -> None:
        super().__init__(name=name, delay=delay, value=value, **kwargs)
        self._limits = (float(limits[0]), float(limits[1]))

    @property
    def limits(self) -> tuple[float, float]:
        return self._limits

    def set(self, value: float, **kwargs: Any):
        lo, hi = self._limits
        if not (np.isfinite(value) and lo <= value <= hi):
            raise LimitError(f"{self.name}: {value} eV is outside the limits [{lo}, {hi}] eV")
        return super().set(value, **kwargs)

    def describe(self):
        d = super().describe()
        for v in d.values():
            v["units"] = "eV"
        return d

    @property
    def position(self) -> float:
        return float(self.readback.get())


class TransmissionDetector(Device):
    """Counts in i0 and it, and mu = ln(i0/it), for the sample at the axis' current energy."""

    i0 = Cpt(Signal, value=0.0, kind="normal")
    it = Cpt(Signal, value=0.0, kind="normal")
    mu = Cpt(Signal, value=0.0, kind="hinted")
    dwell_time = Cpt(Signal, value=1.0, kind="config")
    flux = Cpt(Signal, value=1e6, kind="config")
    calibration_offset = Cpt(Signal, value=0.0, kind="config")

    UNITS = {"i0": "counts", "it": "counts", "mu": "", "dwell_time": "s", "flux": "photons/s",
             "calibration_offset": "eV"}

    def __init__(self, *args: Any, axis: EnergyAxis, sample: Sample, seed: int | None = None,
                 background: float = 0.3, edge_step: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis
        self.sample = sample
        self.background = background
        self.edge_step = edge_step
        self.rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def expected_counts(self, energy: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free (i0, it) at ``energy`` eV."""
        i0 = float(self.flux.get()) * float(self.dwell_time.get())
        mu = self.sample.mu_at(np.asarray(energy, float) + float(self.calibration_offset.get()))
        return np.full_like(mu, i0), i0 * np.exp(-(self.background + self.edge_step * mu))

    def trigger(self) -> StatusBase:
        with self._lock:
            i0_exp, it_exp = self.expected_counts(self.axis.position)
            i0 = float(self.rng.poisson(i0_exp))
            it = float(self.rng.poisson(it_exp))
            self.i0.put(i0)
            self.it.put(it)
            # a dark (zero-count) chamber gives no finite mu: report NaN, the consumer drops it
            self.mu.put(float(np.log(i0 / it)) if i0 > 0 and it > 0 else float("nan"))
        st = StatusBase()
        st.set_finished()
        return st

    def describe(self):
        d = super().describe()
        for key, v in d.items():
            v["units"] = self.UNITS.get(key[len(self.name) + 1:], "")
        return d

    def describe_configuration(self):
        d = super().describe_configuration()
        for key, v in d.items():
            v["units"] = self.UNITS.get(key[len(self.name) + 1:], "")
        return d
