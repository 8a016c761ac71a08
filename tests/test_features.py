import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from xanes_agent.models.features import DEFAULT_GRID, PointwiseFeaturizer, PolynomialFeaturizer, coverage_mask, to_grid


def test_polynomial_shape_and_names():
    f = PolynomialFeaturizer().fit()
    assert f.projection_.shape == (100, 156)
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
        size = 100 // nc
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
    X = rng.normal(size=(20, 100))
    f = PolynomialFeaturizer(white_line=False).fit()
    F = f.transform(X)
    g = DEFAULT_GRID.energies
    x = g[:25] - g[:25].mean()
    for i in range(20):
        np.testing.assert_allclose(F[i, :4], np.polyfit(x, X[i, :25], 3)[::-1], atol=1e-10)


def test_nan_exactly_where_coverage_missing():
    f = PolynomialFeaturizer().fit()
    X = np.ones((1, 100))
    X[0, 60:] = np.nan  # measured up to grid point 59
    F = f.transform(X)[0]
    lo_pts = {}
    for k, name in enumerate(f.feature_names_[:-1]):
        nc, c = int(name.split("_")[0][6:]), int(name.split("_c")[1].split("_")[0])
        size = 100 // nc
        covered = (c + 1) * size <= 60
        assert np.isnan(F[k]) == (not covered), name
        lo_pts[name] = covered
    assert not np.isnan(F[-1])  # white line needs E0..E0+25 eV: grid points 10..59, all covered here
    p = PointwiseFeaturizer().fit().transform(X)
    assert np.array_equal(np.isnan(p[0]), np.arange(100) >= 60)
    X[0, 50:] = np.nan
    assert np.isnan(f.transform(X)[0, -1])


def test_coverage_mask_gaps():
    g = DEFAULT_GRID
    e = np.concatenate([np.arange(-5, 10, 0.5), np.arange(20, 45.5, 5.0)])  # fine, then 5 eV steps
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
    out = make_pipeline(PointwiseFeaturizer()).fit_transform(np.zeros((3, 100)))
    assert out.shape == (3, 100)
    with pytest.raises(ValueError, match="100-point grid"):
        PolynomialFeaturizer().fit().transform(np.zeros((2, 50)))


def test_derivative_features_are_mu_and_its_slope_per_ev():
    from xanes_agent.models.features import DerivativeFeaturizer, make_featurizer

    f = make_featurizer("derivative")
    assert isinstance(f, DerivativeFeaturizer) and len(f.feature_names_) == 200 == len(f.energy_ranges_)
    g = f.grid.energies
    X = np.vstack([0.02 * g + 1.0, np.where(g > 20, np.nan, np.sin(g / 3.0))])
    F = f.transform(X)
    np.testing.assert_allclose(F[0, :100], X[0])
    np.testing.assert_allclose(F[0, 100:], 0.02)  # a ramp of 0.02 per eV, ends included
    inside = (g > -4) & (g < 19)  # central differences of sin(E/3): cos(E/3)/3 to O(step^2)
    np.testing.assert_allclose(F[1, 100:][inside], np.cos(g[inside] / 3.0) / 3.0, atol=2e-3)
    assert np.all(np.isnan(F[1, 100:][g > 20.5])) and np.all(np.isfinite(F[1, 100:][g < 19.5]))
