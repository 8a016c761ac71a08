"""Spectra and their labels: readers, the in-memory collection, FEFF10 runs and the reference library.

This sits beside ``models`` and ``simulator`` because both consume it.
"""

from .collection import LABEL_NAMES, Spectrum, SpectrumCollection
from .errors import DataFormatError
from .readers import (
    read_library,
    read_mp_json,
    read_poscar,
    read_spectrum,
    read_two_column,
    read_xmu,
    write_library,
)

__all__ = [
    "LABEL_NAMES",
    "DataFormatError",
    "Spectrum",
    "SpectrumCollection",
    "read_library",
    "read_mp_json",
    "read_poscar",
    "read_spectrum",
    "read_two_column",
    "read_xmu",
    "write_library",
]
