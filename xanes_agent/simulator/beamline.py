"""One call to a RunEngine-ready simulated beamline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..foundation.edges import edge_energy
from .devices import EnergyAxis, TransmissionDetector
from .samples import Sample


@dataclass
class Beamline:
    mono: EnergyAxis
    det: TransmissionDetector
    sample: Sample
    md: dict[str, Any]

    @property
    def energy_field(self) -> str:
        return self.mono.readback.name

    @property
    def mu_field(self) -> str:
        return self.det.mu.name


def xas_metadata(element: str, edge: str, energy_field: str, mu_field: str) -> dict[str, Any]:
    """Start-document metadata of the project's convention (see the package docstring)."""
    return {"element": element, "edge": edge,
            "xas": {"energy_field": energy_field, "mu_field": mu_field, "energy_units": "eV"}}


def make_beamline(sample: Sample, seed: int | None = None, flux: float = 1e6, dwell_time: float = 1.0,
                  calibration_offset: float = 0.0, move_time: float = 0.0, include_truth: bool = False,
                  mono_name: str = "mono_energy", det_name: str = "det") -> Beamline:
    """Energy axis + transmission detector replaying ``sample``; ``md`` goes into ``RE(plan, **md)``.

    The ground-truth labels are added to ``md`` (under ``sample_truth``) only when
    ``include_truth`` is set, for benchmarks.
    """
    e_edge = edge_energy(sample.element, sample.edge)
    mono = EnergyAxis(name=mono_name, limits=(e_edge - 500.0, e_edge + 1500.0), delay=move_time, value=e_edge)
    det = TransmissionDetector(name=det_name, axis=mono, sample=sample, seed=seed)
    det.flux.put(flux)
    det.dwell_time.put(dwell_time)
    det.calibration_offset.put(calibration_offset)
    md = xas_metadata(sample.element, sample.edge, mono.readback.name, det.mu.name)
    md["sample"] = {"id": sample.id, "source": sample.source}
    if include_truth:
        md["sample_truth"] = {k: float(v) for k, v in sample.labels.items()}
    return Beamline(mono, det, sample, md)
