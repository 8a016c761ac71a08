"""Energy ranges (eV) as plans measure them and strategies propose them."""

from __future__ import annotations

import numpy as np


def chunk_energies(start: float, stop: float, step: float) -> np.ndarray:
    """Energies (eV) from ``start`` to ``stop``, both included, evenly spaced at most ``step`` eV
    apart (exactly ``step`` when it divides the range)."""
    n = max(2, int(np.ceil((stop - start) / step - 1e-9)) + 1)
    return np.linspace(start, stop, n)


def range_energies(start: float, stop: float, step: float) -> np.ndarray:
    """:func:`chunk_energies` of a range given from outside (a plan argument, a proposal), checked
    first: ``ValueError`` naming the range unless ``start <= stop``, ``step > 0`` and all finite."""
    if not step > 0 or not np.isfinite([start, stop, step]).all() or stop < start:
        raise ValueError(f"bad energy range [{start}, {stop}, {step}] (need start <= stop, step > 0, in eV)")
    return chunk_energies(start, stop, step)
