import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from xanes_agent.models.features import DEFAULT_GRID, PointwiseFeaturizer, PolynomialFeaturizer, coverage_mask, to_grid

N = DEFAULT_GRID.n  # grid points (120: E0 - 15 .. E0 + 45 eV)


def test_polynomial_shape_and_names():
    f = PolynomialFeaturizer().fit()
    assert f.projection_.shape == (N, 156)
    assert len(f.feature_names_) == 157 and f.feature_names_[-1] == "white_line_energy"
    assert f.energy_ranges_.shape == (157, 2)
    assert np.all(f.energy_ranges_[:-1, 1] > f.energy_ranges_[:-1, 0])


def test_cubic_reproduced_exactly():
    f = PolynomialFeaturizer().fit()
    g = DEFAULT_GRID.energies
    coeffs = np.array([0.3, -0.02, 1e-3, -2e-5])
    X = np.polynomial.polynomial.polyval(g, coeffs)[None, :]
    F = f.transform(X)[0]
    col = 0
    for nc in (4, 5, 10, 20):
        size = N // nc
        for c in range(nc):
            x = g[c * size:(c + 1) * size]
            xc = x.mean()
            # the same cubic re-expanded about the chunk centre
            shifted = np.polynomial.polynomial.polyval(x, coeffs)
            ref = np.polynomial.polynomial.polyfit(x - xc, shifted, 3)
            np.testing.assert_allclose(F[col:col + 4], ref, rtol=1e-8, atol=1e-12)
            col += 4


def test_matches_polyfit_loop_on_random_batch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, N))
    f = PolynomialFeaturizer(white_line=False).fit()
    F = f.transform(X)
    g = DEFAULT_GRID.energies
    q = N // 4  # the first of 4 chunks
    x = g[:q] - g[:q].mean()
    for i in range(20):
        np.testing.assert_allclose(F[i, :4], np.polyfit(x, X[i, :q], 3)[::-1], atol=1e-10)


def test_nan_exactly_where_coverage_missing():
    f = PolynomialFeaturizer().fit()
    g = DEFAULT_GRID.energies
    X = np.ones((1, N))
    upto = int(np.searchsorted(g, 30.0))  # measured up to E0 + 30 eV
    X[0, upto:] = np.nan
    F = f.transform(X)[0]
    for k, name in enumerate(f.feature_names_[:-1]):
        nc, c = int(name.split("_")[0][6:]), int(name.split("_c")[1].split("_")[0])
        size = N // nc
        covered = (c + 1) * size <= upto
        assert np.isnan(F[k]) == (not covered), name
    assert not np.isnan(F[-1])  # white line needs E0..E0+25 eV, all covered here
    p = PointwiseFeaturizer().fit().transform(X)
    assert np.array_equal(np.isnan(p[0]), np.arange(N) >= upto)
    X[0, int(np.searchsorted(g, 20.0)):] = np.nan
    assert np.isnan(f.transform(X)[0, -1])


def test_coverage_mask_gaps():
    g = DEFAULT_GRID
    e = np.concatenate([np.arange(g.start, 10, 0.5), np.arange(20, 45.5, 5.0)])  # fine, then 5 eV steps
    m = coverage_mask(e, g, max_gap=1.6)
    energies = g.energies
    assert m[energies < 9.4].all()
    coarse = (energies > 10.9) & (energies < 19.1)
    assert not m[coarse].any()
    vals = to_grid(e + 8000, np.ones_like(e), 8000.0)
    assert np.isnan(vals[coarse]).all() and not np.isnan(vals[energies < 9.4]).any()


def test_sklearn_compatible():
    f = clone(PolynomialFeaturizer(chunks=(4, 5)))
    assert f.get_params()["chunks"] == (4, 5)
    out = make_pipeline(PointwiseFeaturizer()).fit_transform(np.zeros((3, N)))
    assert out.shape == (3, N)
    with pytest.raises(ValueError, match=f"{N}-point grid"):
        PolynomialFeaturizer().fit().transform(np.zeros((2, 50)))


def test_derivative_features_are_mu_and_its_slope_per_ev():
    from xanes_agent.models.features import DerivativeFeaturizer, make_featurizer

    f = make_featurizer("derivative")
    assert isinstance(f, DerivativeFeaturizer) and len(f.feature_names_) == 2 * N == len(f.energy_ranges_)
    g = f.grid.energies
    X = np.vstack([0.02 * g + 1.0, np.where(g > 20, np.nan, np.sin(g / 3.0))])
    F = f.transform(X)
    np.testing.assert_allclose(F[0, :N], X[0])
    np.testing.assert_allclose(F[0, N:], 0.02)  # a ramp of 0.02 per eV, ends included
    inside = (g > g[0] + 1) & (g < 19)  # central differences of sin(E/3): cos(E/3)/3 to O(step^2)
    np.testing.assert_allclose(F[1, N:][inside], np.cos(g[inside] / 3.0) / 3.0, atol=2e-3)
    assert np.all(np.isnan(F[1, N:][g > 20.5])) and np.all(np.isfinite(F[1, N:][g < 19.5]))


def test_computed_spectra_are_zero_below_the_fermi_level_measured_ones_unmeasured():
    """FEFF starts a spectrum at the Fermi level, 8 eV below E0 here: a computed spectrum covers the
    window's first 7 eV with mu = 0; the same numbers as a measured spectrum leave them NaN."""
    from xanes_agent.foundation.normalization import find_e0
    from xanes_agent.models.features import spectra_to_grid

    e = np.arange(8972.0, 9060.0, 0.25)
    mu = 0.05 + 0.95 * (0.5 + np.arctan(e - 8980.0) / np.pi)
    e0 = find_e0(e, mu)
    assert e[0] - e0 < -7.0
    below = DEFAULT_GRID.energies < e[0] - e0 - 0.5
    X, got = spectra_to_grid([e], [mu])
    assert np.isfinite(X).all() and np.all(X[0, below] == 0.0) and abs(got[0] - e0) < 0.5
    Xm, _ = spectra_to_grid([e], [mu], computed=False)
    assert np.isnan(Xm[0, below]).all() and np.isfinite(Xm[0, ~below][2:]).all()
