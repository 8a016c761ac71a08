"""A simulated XAS beamline: ophyd devices that replay computed spectra with counting noise.

``make_beamline(sample=...)`` returns a monochromator energy axis and a transmission detector
ready for a stock RunEngine and stock plans, plus the start-document metadata of the convention:

``element``  absorbing element, e.g. ``"Cu"``
``edge``     absorption edge, e.g. ``"K"``
``xas``      ``{"energy_field": <data key of the energy readback, eV>,
               "mu_field": <data key of mu>, "energy_units": "eV"}``

A real beamline profile sets the same keys (e.g. in ``RE.md``) so the agent needs no per-beamline
code.
"""

from .beamline import Beamline, make_beamline, xas_metadata
from .devices import EnergyAxis, TransmissionDetector
from .samples import Sample, sample_from_file, sample_from_library, sample_from_structure

__all__ = ["Beamline", "EnergyAxis", "Sample", "TransmissionDetector", "make_beamline", "sample_from_file",
           "sample_from_library", "sample_from_structure", "xas_metadata"]
