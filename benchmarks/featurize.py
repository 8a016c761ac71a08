"""Spectra per second of the batch polynomial featurizer vs a numpy.polyfit loop, same run.

    python benchmarks/featurize.py [--n 10000]
"""

import argparse
import time

import numpy as np

from xanes_agent.models.features import DEFAULT_GRID, PolynomialFeaturizer


def polyfit_loop(X: np.ndarray) -> np.ndarray:
    g = DEFAULT_GRID.energies
    out = np.empty((len(X), 156))
    for i, row in enumerate(X):
        col = 0
        for nc in (4, 5, 10, 20):
            size = 100 // nc
            for c in range(nc):
                x = g[c * size:(c + 1) * size]
                out[i, col:col + 4] = np.polyfit(x - x.mean(), row[c * size:(c + 1) * size], 3)[::-1]
                col += 4
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    X = np.random.default_rng(0).normal(size=(a.n, 100))
    f = PolynomialFeaturizer(white_line=False).fit()
    f.transform(X[:10])
    t = time.perf_counter()
    F = f.transform(X)
    t_batch = time.perf_counter() - t
    n_loop = min(a.n, 1000)  # the loop is slow: time 1,000 spectra and scale
    t = time.perf_counter()
    ref = polyfit_loop(X[:n_loop])
    t_loop = (time.perf_counter() - t) * a.n / n_loop
    np.testing.assert_allclose(F[:n_loop], ref, atol=1e-8)
    print(f"batch of {a.n} spectra, 156 coefficients each (identical to polyfit within 1e-8)")
    print(f"  batch linear map : {t_batch * 1e3:9.1f} ms  ({a.n / t_batch:12,.0f} spectra/s)")
    print(f"  np.polyfit loop  : {t_loop * 1e3:9.1f} ms  ({a.n / t_loop:12,.0f} spectra/s)  (timed on {n_loop})")
    print(f"  speed-up         : {t_loop / t_batch:9.0f}x  (target >= 50x)")


if __name__ == "__main__":
    main()
