"""Energy ranges (eV) as plans measure them and strategies propose them."""

from __future__ import annotations

import numpy as np


def chunk_energies(start: float, stop: float, step: float) -> np.ndarray:
    """Energies (eV) from ``start`` to ``stop``, both included, evenly spaced at most ``step`` eV
    apart (exactly ``step`` when it divides the range)."""
    n = max(2, int(np.ceil((stop - start) / step - 1e-9)) + 1)
    return np.linspace(start, stop, n)


def check_range(start: float, stop: float, step: float) -> None:
    """``ValueError`` naming the range unless ``start <= stop``, ``step > 0`` and all finite (eV)."""
    if not step > 0 or not np.isfinite([start, stop, step]).all() or stop < start:
        raise ValueError(f"bad energy range [{start}, {stop}, {step}] (need start <= stop, step > 0, in eV)")


def range_energies(start: float, stop: float, step: float) -> np.ndarray:
    """:func:`chunk_energies` of a range given from outside (a plan argument, a proposal), checked
    first (:func:`check_range`)."""
    check_range(start, stop, step)
    return chunk_energies(start, stop, step)


def lattice_energies(start: float, stop: float, step: float, origin: float) -> np.ndarray:
    """The points ``origin + k * step`` (eV) from the last one at or below ``start`` to the first one
    at or above ``stop``: a range measured on a lattice shared with other ranges (the adaptive
    policy's proposals), checked first (:func:`check_range`; ``origin`` finite)."""
    check_range(start, stop, step)
    if not np.isfinite(origin):
        raise ValueError(f"bad lattice origin {origin} (eV)")
    k0 = np.floor((start - origin) / step + 1e-9)
    k1 = np.ceil((stop - origin) / step - 1e-9)
    return origin + step * np.arange(k0, k1 + 1)
