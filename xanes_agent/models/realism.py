"""Experiment-like copies of computed spectra, for training models that meet measured data.

A measured K-edge differs from a FEFF spectrum of the same site in ways that have nothing to do
with the structure, and a forest trained on clean FEFF spectra splits on exactly those:

* **broadening**: FEFF includes the core-hole lifetime of the edge, but a measurement adds the
  monochromator's resolution (Si(111) at 5-9 keV: ~0.7-1.3 eV) and often extra lifetime and
  many-body broadening, so features are ~0.5-3 eV wider (Gaussian FWHM drawn in
  :attr:`Realism.fwhm`);
* **edge definition and energy scale**: E0 from the maximum derivative moves with broadening,
  calibration and pre-edge features; a further uniform shift of the grid origin within
  :attr:`Realism.e0_shift` eV; and the energy scale above E0: where a code's potential (muffin-tin
  level, self-energy) puts the features differs from the sample's by a few per cent of E - E0
  (FEFF 9 and FEFF10 differ by a median 3 % on the same Cu sites, ``scripts/code_energy_scale.py``),
  so a copy may be stretched about E0 by a factor 1 + s, s uniform in +-:attr:`Realism.stretch`
  (off by default: stretching E - E0 by s is what scaling the bond lengths by ~1/sqrt(1 + s)
  does, so it blurs the distance signal, and +-5 % moved no coordination score under transfer,
  ``benchmarks/transfer.py --stretch``, session 17);
* **normalization**: the post-edge value used for scaling is off by a few per cent (background
  subtraction, self-absorption, a different post-edge fit): a multiplicative error with std
  :attr:`Realism.scale_std`;
* **noise**: counting noise, sigma log-uniform in :attr:`Realism.noise` (units of the edge step).

Each training spectrum is joined by ``copies`` such copies (:func:`experiment_like_grid`); test
spectra are never altered. The ranges are physical estimates stated here, not tuned on any
measured set (measured references are kept out of training and selection on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..foundation.normalization import find_e0, normalize
from .features import DEFAULT_GRID, Grid, extend_below_fermi, to_grid


@dataclass(frozen=True)
class Realism:
    fwhm: tuple[float, float] = (0.5, 3.0)  # eV, extra Gaussian broadening
    e0_shift: float = 1.0  # eV, uniform +-
    scale_std: float = 0.03  # relative error of the normalization
    noise: tuple[float, float] = (1e-3, 1e-2)  # edge-step units, log-uniform
    copies: int = 2
    stretch: float = 0.0  # relative, uniform +-: E - E0 scaled by 1 + s (0: none)


def broaden(energy: np.ndarray, mu: np.ndarray, fwhm: float, step: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Convolve mu(E) with a Gaussian of ``fwhm`` eV on a uniform ``step`` eV grid.

    The spectrum is resampled (linear) onto the uniform grid over its own range; near the ends the
    kernel is renormalized over the points that exist, so the edge of the range is not pulled down.
    """
    e = np.arange(energy[0], energy[-1] + step / 2, step)
    m = np.interp(e, energy, mu)
    if fwhm <= 0:
        return e, m
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / step
    half = int(np.ceil(4 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    num = np.convolve(m, k, mode="same")
    den = np.convolve(np.ones_like(m), k, mode="same")
    return e, num / den


def experiment_like_grid(energies, mus, rows: np.ndarray, realism: Realism = Realism(),
                         grid: Grid = DEFAULT_GRID, normalization: str = "post_edge",
                         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``realism.copies`` experiment-like grid spectra of each spectrum in ``rows``.

    Returns (X (len(rows) * copies, grid.n), index into ``energies`` of the source of each row).
    Rows whose copy could not be normalized are NaN (the forests route NaN; callers may drop them).
    The spectra are computed ones, extended below the Fermi level before they are broadened
    (:func:`~xanes_agent.models.features.extend_below_fermi`), so the broadening rounds the onset.
    """
    rng = rng or np.random.default_rng(0)
    out, src = [], []
    lo, hi = realism.noise
    for i in rows:
        for _ in range(realism.copies):
            e, m = broaden(*extend_below_fermi(energies[i], mus[i]), rng.uniform(*realism.fwhm))
            nrm = normalize(e, m, normalization, e0=find_e0(e, m))
            x = np.full(grid.n, np.nan)
            if np.isfinite(nrm.e0):
                if realism.stretch > 0:  # drawn only when asked, so copies without it stay as they were
                    e = nrm.e0 + (e - nrm.e0) * (1.0 + rng.uniform(-realism.stretch, realism.stretch))
                x = to_grid(e, nrm.mu, nrm.e0 + rng.uniform(-realism.e0_shift, realism.e0_shift), grid)
                x = x * (1.0 + rng.normal(0.0, realism.scale_std))
                if hi > 0:
                    x = x + rng.normal(size=grid.n) * np.exp(rng.uniform(np.log(lo), np.log(hi)))
            out.append(x)
            src.append(i)
    return np.array(out).reshape(-1, grid.n), np.array(src, dtype=int)
