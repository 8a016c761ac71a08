"""Calibrated uncertainty: conformal intervals, the CN confidence map, the applicability domain,
and what the bundle, the agent's documents and the stop rules do with them."""

import dataclasses
import json

import numpy as np
import pytest

from xanes_agent.agent.stopping import DEFAULT_STABILITY, DEFAULT_THRESHOLDS, stable_reason, stop_reason
from xanes_agent.models.calibration import (
    COVERAGE_EDGES,
    MIN_NEW_TYPES,
    MIN_STRATUM,
    SCALE_BINS,
    DomainModel,
    apply_confidence_map,
    band_quantiles,
    conformal_quantile,
    coverage_band,
    expected_calibration_error,
    fit_calibration,
    fit_confidence_map,
    group_conformal_quantile,
    scale_bin_index,
    scale_bin_quantiles,
)


def test_conformal_quantile_covers_exchangeable_data():
    rng = np.random.default_rng(0)
    hits = {0.68: [], 0.9: []}
    for _ in range(200):
        cal, new = np.abs(rng.standard_t(3, 50)), np.abs(rng.standard_t(3, 200))
        for L in hits:
            hits[L].append(np.mean(new <= conformal_quantile(cal, L)))
    for L, h in hits.items():  # marginal coverage >= L (and not wildly above)
        assert L <= np.mean(h) <= L + 0.05
    assert conformal_quantile(np.array([np.nan]), 0.9) == np.inf  # nothing to calibrate on: no claim


def test_group_conformal_quantile_covers_new_groups_where_the_pooled_one_does_not():
    """Groups of very different size and difficulty (a big family whose members are all easy, many
    single-site hosts): the interval must cover a spectrum of a *new* group."""
    rng = np.random.default_rng(1)
    pooled, grouped = {0.68: [], 0.9: []}, {0.68: [], 0.9: []}
    for _ in range(200):
        sizes = np.r_[60, 40, np.ones(18, int)]  # two families and 18 hosts
        scale = rng.lognormal(0.0, 0.8, len(sizes))  # each group's own difficulty
        scale[:2] = 0.3  # the families happen to be easy
        groups = np.repeat(np.arange(len(sizes)), sizes)
        scores = np.abs(rng.normal(size=len(groups))) * scale[groups]
        new = np.abs(rng.normal(size=400)) * rng.lognormal(0.0, 0.8, 400)  # spectra of new groups
        for L in pooled:
            pooled[L].append(np.mean(new <= conformal_quantile(scores, L)))
            grouped[L].append(np.mean(new <= group_conformal_quantile(scores, groups, L)))
    for L in pooled:
        assert np.mean(pooled[L]) < L - 0.1  # the spectrum-level quantile under-covers new groups
        assert L - 0.03 <= np.mean(grouped[L]) <= L + 0.08
    # one spectrum per group: the same as the plain rule
    s = rng.random(30)
    assert group_conformal_quantile(s, np.arange(30), 0.9) == conformal_quantile(s, 0.9)


def test_intervals_hold_for_a_new_structure_type_as_well_as_for_a_new_parent():
    """Many easy hosts of known types and a few held-out structure types that err more (a family
    the library has nothing like): the quantile for a new parent alone under-covers a new type; the
    interval out of the domain takes the larger of the two, and a new type's spectra are covered at
    the level; in the domain, where a spectrum is one of a new parent of the types the library has,
    the larger would over-cover, and the new parent's quantile alone holds."""
    rng = np.random.default_rng(2)
    covered = {0.68: [], 0.9: []}
    alone = {0.68: [], 0.9: []}
    hosts_parent = {0.68: [], 0.9: []}
    hosts_both = {0.68: [], 0.9: []}
    for _ in range(100):
        hosts = np.abs(rng.normal(size=400))  # 400 single-site hosts
        types = rng.lognormal(1.0, 0.5, 8)  # 8 held-out types, 30 spectra each, 2-3x harder
        t_rows = np.repeat(np.arange(8), 30)
        fam = np.abs(rng.normal(size=len(t_rows))) * types[t_rows]
        scores = np.r_[hosts, fam]
        groups = np.r_[[f"mp-{i}" for i in range(400)], [f"family:{i}" for i in t_rows]]
        kinds = np.r_[groups[:400], [f"type:{i}" for i in t_rows]]
        band = np.full(len(scores), 2)
        both = band_quantiles(scores, band, groups, kinds)[2]
        parent = band_quantiles(scores, band, groups)[2]
        new = np.abs(rng.normal(size=300)) * rng.lognormal(1.0, 0.5, 300)  # spectra of new types
        new_hosts = np.abs(rng.normal(size=300))  # new parents like the hosts
        for i, L in enumerate((0.68, 0.9)):
            assert both[i] >= parent[i]
            covered[L].append(np.mean(new <= both[i]))
            alone[L].append(np.mean(new <= parent[i]))
            hosts_parent[L].append(np.mean(new_hosts <= parent[i]))
            hosts_both[L].append(np.mean(new_hosts <= both[i]))
    for L in covered:
        assert np.mean(alone[L]) < L - 0.2  # hosts alone say nothing about a new type
        assert np.mean(covered[L]) >= L - 0.05
        assert abs(np.mean(hosts_parent[L]) - L) <= 0.03  # a new parent of a known kind: as stated
        assert np.mean(hosts_both[L]) > L + 0.05  # the new type's quantile over-covers it
    few = np.r_[[f"mp-{i}" for i in range(400)], [f"type:{i % (MIN_NEW_TYPES - 1)}" for i in t_rows]]
    assert band_quantiles(scores, band, groups, few) == band_quantiles(scores, band, groups)  # too few types


def test_each_side_of_the_domain_flag_gets_intervals_that_hold_on_that_side():
    """Spectra in the domain err little, flagged ones three times more (hosts and a few new
    types among them): one pooled quantile (the larger of a new parent's and a new type's)
    over-covers the first;
    fitted on each side of the flag (Mondrian), each side is covered at the level. A side with
    too few rows to fit on takes every row."""
    rng = np.random.default_rng(5)
    n_in, n_out = 900, 300
    err = np.r_[np.abs(rng.normal(size=n_in)), 3 * np.abs(rng.normal(size=n_out))]
    flagged = np.r_[np.zeros(n_in, bool), np.ones(n_out, bool)]
    groups = np.array([f"mp-{i}" for i in range(n_in + n_out)])
    types = groups.copy()
    types[n_in:n_in + 120] = [f"type:{i % 6}" for i in range(120)]  # new types among the flagged rows
    y = {"mean_nn_distance": 2.0 + err}
    pred = {"mean_nn_distance": np.full(len(err), 2.0)}
    ones = np.ones(len(err))
    domain = DomainModel.fit(rng.normal(size=(50, 4)), rng)

    def fit(flags):
        return fit_calibration(y, pred, None, None, ones, ones, ones.astype(bool), domain, {}, groups=groups,
                               types=types, flagged=flags)

    cal, pooled = fit(flagged), fit(None)
    new_in, new_out = np.abs(rng.normal(size=4000)), 3 * np.abs(rng.normal(size=4000))
    for i, L in enumerate((0.68, 0.9)):
        q_in, q_out = cal.quantiles_in_domain["mean_nn_distance"][2][i], cal.quantiles["mean_nn_distance"][2][i]
        q_pooled = pooled.quantiles["mean_nn_distance"][2][i]
        assert abs(np.mean(new_in <= q_in) - L) <= 0.04 and abs(np.mean(new_out <= q_out) - L) <= 0.04
        assert np.mean(new_in <= q_pooled) > L + 0.08  # the pooled one, new types and all, over-covers
    # the halfwidths follow each row's side of the flag
    hw = cal.halfwidths("mean_nn_distance", np.ones(2), np.ones(2), in_domain=np.array([True, False]))
    np.testing.assert_allclose(hw, [cal.quantiles_in_domain["mean_nn_distance"][2],
                                    cal.quantiles["mean_nn_distance"][2]])
    # too few flagged rows to fit on: that side takes every row
    few = np.zeros(len(err), bool)
    few[n_in:n_in + MIN_STRATUM - 1] = True
    thin = fit(few)
    assert thin.quantiles["mean_nn_distance"] == pooled.quantiles["mean_nn_distance"]


def test_in_the_domain_each_bin_of_the_scale_gets_intervals_that_hold_in_it():
    """Errors that grow faster than the interval scale sigma (as the held-out spectra's do): one
    table over-covers the spectra of small sigma and under-covers those of large sigma; a table
    per quartile of sigma (Mondrian on the difficulty) covers each at the level. Bins too thin to
    fit on, or whose 68 % quantile is 0 (an integer label predicted exactly), are merged."""
    rng = np.random.default_rng(11)
    n = 2400

    def draw(size):
        sigma = rng.uniform(0.5, 2.0, size)
        return sigma, sigma ** 2 * np.abs(rng.normal(size=size))  # |error|, growing as sigma squared

    sigma, err = draw(n)
    scores = err / sigma
    groups = np.array([f"mp-{i // 2}" for i in range(n)])  # two spectra a parent
    band = np.full(n, 2)
    table = scale_bin_quantiles(scores, sigma, band, groups)
    entry = table[2]
    assert len(entry["edges"]) == SCALE_BINS - 1
    np.testing.assert_allclose(entry["edges"], np.quantile(sigma, [0.25, 0.5, 0.75]))
    one = [group_conformal_quantile(scores, groups, L) for L in (0.68, 0.9)]
    new_sigma, new_err = draw(20000)
    k = scale_bin_index(entry["edges"], new_sigma)
    q = np.asarray(entry["quantiles"])[k]
    for i, L in enumerate((0.68, 0.9)):
        for b in range(SCALE_BINS):
            inside = new_err[k == b] <= q[k == b, i] * new_sigma[k == b]
            assert abs(np.mean(inside) - L) <= 0.04
        pooled = new_err <= one[i] * new_sigma
        assert np.mean(pooled[k == 0]) > L + 0.05 and np.mean(pooled[k == SCALE_BINS - 1]) < L - 0.05
    # an integer label the trees predict exactly where sigma is small: no interval of no width
    exact = scores.copy()
    exact[sigma < np.quantile(sigma, 0.3)] = 0.0
    entry = scale_bin_quantiles(exact, sigma, band, groups)[2]
    assert len(entry["edges"]) < SCALE_BINS - 1 and all(q68 > 0 for q68, _ in entry["quantiles"])
    # too few rows for two bins of MIN_STRATUM: one table, the new-parent one
    few = slice(0, MIN_STRATUM + 5)
    entry = scale_bin_quantiles(scores[few], sigma[few], band[few], groups[few])[2]
    assert entry["edges"] == [] and entry["quantiles"] == [
        [group_conformal_quantile(scores[few], groups[few], L) for L in (0.68, 0.9)]]
    # fit_calibration keeps them for the in-domain side, and the halfwidths take each row's bin
    domain = DomainModel.fit(rng.normal(size=(50, 4)), rng)
    ones = np.ones(n)
    spread = {"mean_nn_distance": sigma - 0.25 * sigma.mean()}  # so that sigma(x) is the drawn sigma
    cal = fit_calibration({"mean_nn_distance": 2.0 + err}, {"mean_nn_distance": np.full(n, 2.0)}, None, None,
                          ones, ones, ones.astype(bool), domain, {}, groups=groups, types=groups.copy(),
                          spread=spread, flagged=np.zeros(n, bool))
    np.testing.assert_allclose(cal.spread_floors["mean_nn_distance"], 0.25 * np.mean(spread["mean_nn_distance"]))
    s_fit = spread["mean_nn_distance"] + cal.spread_floors["mean_nn_distance"]
    entry = cal.scale_bins["mean_nn_distance"][2]
    np.testing.assert_allclose(entry["edges"], np.quantile(s_fit, [0.25, 0.5, 0.75]))
    probe = np.array([0.6, 1.9])
    hw = cal.halfwidths("mean_nn_distance", np.ones(2), np.ones(2),
                        spread=probe - cal.spread_floors["mean_nn_distance"], in_domain=np.ones(2, bool))
    np.testing.assert_allclose(hw, np.asarray(entry["quantiles"])[[0, -1]] * probe[:, None])
    assert hw[1, 0] / probe[1] > hw[0, 0] / probe[0]  # the largest scale's quantile is the larger


def test_confidence_map_is_monotone_and_normalized():
    rng = np.random.default_rng(1)
    raw = rng.dirichlet([0.3, 0.3, 0.3], 2000)
    # an over-confident model: right only 60 % of the time whatever it says
    y = np.where(rng.random(2000) < 0.6, np.argmax(raw, axis=1), rng.integers(0, 3, 2000))
    kx, ky = fit_confidence_map(raw, y)
    assert np.all(np.diff(ky) >= 0) and min(ky) >= 1 / 3 - 1e-12
    cal = apply_confidence_map(raw, kx, ky)
    np.testing.assert_allclose(cal.sum(axis=1), 1.0)
    assert expected_calibration_error(raw, y) > 0.1
    k = np.argmax(raw, axis=1)
    conf = cal[np.arange(len(k)), k]
    assert abs(conf.mean() - np.mean(k == y)) < 0.03  # calibrated on average


def test_in_family_distance_leaves_a_spectrum_s_whole_material_out():
    # materials of two spectra each, near twins (a site's FSR and RPA spectra): a spectrum's nearest
    # neighbour is its twin, which a held-out material's spectra never meet in training
    rng = np.random.default_rng(5)
    sites = rng.normal(size=(300, 12))
    F = np.repeat(sites, 2, axis=0) + rng.normal(scale=0.05, size=(600, 12))
    materials = np.repeat(np.array([f"mp-{i}" for i in range(300)]), 2)
    self_out, material_out = DomainModel.fit(F), DomainModel.fit(F, groups=materials)
    d_self, d_material = self_out.in_family_distance(), material_out.in_family_distance()
    assert np.all(d_material > d_self)  # the twin is gone from every spectrum's neighbours
    np.testing.assert_allclose(material_out.distance(F[:4]), self_out.distance(F[:4]))  # scoring is unchanged
    new_sites = rng.normal(size=(200, 12))
    new = np.repeat(new_sites, 2, axis=0) + rng.normal(scale=0.05, size=(400, 12))

    def flagged(model, inside):
        return np.mean(model.distance(new) > np.quantile(inside, 0.95))

    assert flagged(self_out, d_self) > 0.25  # limits set on twins' distances flag a third of new materials
    assert flagged(material_out, d_material) <= 0.10  # about the 5 % the quantile states
    # a group larger than DOMAIN_K still leaves k neighbours, and a material of one spectrum is
    # left out as itself
    big = DomainModel.fit(F[:40], groups=np.array(["a"] * 8 + [f"m{i}" for i in range(32)]))
    assert np.all(np.isfinite(big.in_family_distance()))
    with pytest.raises(ValueError, match="one material per row"):
        DomainModel.fit(F, groups=materials[:10])


def test_domain_model_flags_what_is_far_and_partial_spectra_are_not_closer():
    rng = np.random.default_rng(2)
    F = rng.normal(size=(400, 20))
    dm = DomainModel.fit(F)
    inside = dm.in_family_distance()
    assert np.all(inside > 0)  # a spectrum is never its own neighbour
    dm.typical = float(np.median(inside))
    dm.threshold = float(np.quantile(inside, 0.95) / dm.typical)
    near, far = rng.normal(size=(50, 20)), rng.normal(4.0, 1.0, size=(50, 20))
    assert np.mean(dm.score(near) > dm.threshold) < 0.2
    assert np.all(dm.score(far) > dm.threshold)
    part = far.copy()
    part[:, 10:] = np.nan
    assert np.all(dm.score(part) > dm.threshold)


def test_coverage_bands():
    assert coverage_band(0.0) == 0 and coverage_band(0.6) == 1 and coverage_band(1.0) == len(COVERAGE_EDGES) - 2


@pytest.fixture(scope="module")
def calibrated_model(bundled_library):
    from xanes_agent.models.training import TrainConfig, train_element

    lib = bundled_library.where(element="Fe")
    return train_element(lib, "Fe", TrainConfig(n_seeds=2, n_estimators=20, calibration_seeds=1), progress=False)


def test_bundle_keeps_the_calibration_and_predictions_carry_it(calibrated_model, bundled_library, tmp_path):
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.model import BundleError, ElementModel

    cal = calibrated_model.calibration
    assert cal.method["folds"] >= 2 and "parent structure" in cal.method["groups"]
    back = ElementModel.load(calibrated_model.save(tmp_path / "fe.npz"))
    lib = bundled_library.where(element="Fe")
    X, _ = spectra_to_grid(lib.energy[:10], lib.mu[:10])
    X[5:, 60:] = np.nan  # partial spectra
    p, q = calibrated_model.predict_grid(X), back.predict_grid(X)
    d = q["mean_nn_distance"]
    np.testing.assert_allclose(p["mean_nn_distance"]["interval90"], d["interval90"])
    assert np.all(d["interval90"][:, 0] <= d["interval68"][:, 0]) and np.all(d["interval68"][:, 0] <= d["prediction"])
    assert np.all(d["std"] > d["seed_std"])  # calibrated out of family: wider than the seed spread
    assert np.all(d["std"][5:] >= d["std"][:5].min())  # partial spectra get no narrower intervals
    cn = q["coordination_number"]
    np.testing.assert_allclose(cn["proba"].sum(axis=1), 1.0)
    assert set(q["charge"]) >= {"in_domain", "domain_score", "interval68"}

    from xanes_agent.models.model import _bundle_digest

    def edited(resign):
        with np.load(tmp_path / "fe.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        m = json.loads(str(arrays["manifest"]))
        m["calibration"]["quantiles"] = "wide"
        if resign:  # a writer that signs what it wrote: the record itself must still be checked
            m["digest"] = _bundle_digest(m)
        arrays["manifest"] = np.array(json.dumps(m))
        np.savez_compressed(tmp_path / "bad.npz", **arrays)
        return tmp_path / "bad.npz"

    with pytest.raises(BundleError, match="digest"):
        ElementModel.load(edited(resign=False))
    with pytest.raises(BundleError, match="calibration"):
        ElementModel.load(edited(resign=True))


def _assert_refused(arrays: dict, tmp_path, key: str, bad) -> None:
    """A bundle whose calibration record has ``bad`` for ``key`` (re-signed, so only the value is
    wrong) is refused, the error naming the key."""
    from xanes_agent.models.model import BundleError, ElementModel, _bundle_digest

    m = json.loads(str(arrays["manifest"]))
    m["calibration"][key] = bad
    m["digest"] = _bundle_digest(m)
    np.savez_compressed(tmp_path / "bad.npz", **{**arrays, "manifest": np.array(json.dumps(m))})
    with pytest.raises(BundleError, match=key):
        ElementModel.load(tmp_path / "bad.npz")


def test_intervals_scale_with_the_trees_spread_and_the_domain_score(calibrated_model, bundled_library, tmp_path):
    from xanes_agent.models.calibration import SPREAD_FLOOR_SHARE, coverage_band, difficulty
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.model import ElementModel, _bundle_digest

    cal = calibrated_model.calibration
    assert set(cal.spread_floors) == set(cal.quantiles) and all(f > 0 for f in cal.spread_floors.values())
    assert "trees' spread" in cal.method["interval"]
    lib = bundled_library.where(element="Fe")
    X, _ = spectra_to_grid(lib.energy[:40], lib.mu[:40])
    X[20:, 50:] = np.nan
    band = coverage_band(np.isfinite(X).mean(axis=1))
    p = calibrated_model.predict_grid(X)
    for name in cal.quantiles:
        d = p[name]
        # in the domain a new parent's quantiles per bin of the scale, out of it a new parent's or a
        # new type's, fitted on each side of the flag
        inside, outside = np.asarray(cal.quantiles_in_domain[name]), np.asarray(cal.quantiles[name])
        sigma = (d["tree_std"] + cal.spread_floors[name]) * d["domain_score"]
        binned = np.array([np.asarray(cal.scale_bins[name][b]["quantiles"])[
            scale_bin_index(cal.scale_bins[name][b]["edges"], [s])[0]] for b, s in zip(band, sigma)])
        q = np.where(d["in_domain"][:, None], binned, outside[band])
        np.testing.assert_allclose(d["std"], q[:, 0] * sigma)
        np.testing.assert_allclose(d["interval90"][:, 1] - d["prediction"], q[:, 1] * sigma)
        # each row its own table (the fixture's two may coincide: halve the in-domain one to see;
        # without the bins, the one in-domain table)
        halved = dataclasses.replace(cal, quantiles_in_domain={name: (inside / 2).tolist()}, scale_bins={})
        flags = np.arange(len(X)) % 2 == 0
        hw = halved.halfwidths(name, d["domain_score"], np.isfinite(X).mean(axis=1), spread=d["tree_std"],
                               in_domain=flags)
        np.testing.assert_allclose(hw, np.where(flags[:, None], inside[band] / 2, outside[band]) * sigma[:, None])
        hw = halved.halfwidths(name, d["domain_score"], np.isfinite(X).mean(axis=1), spread=d["tree_std"])
        np.testing.assert_allclose(hw, outside[band] * sigma[:, None])  # no verdict: as if flagged
        # where the trees agree more, the interval is narrower at the same domain score and band
        wide = difficulty(d["domain_score"], d["tree_std"] * 2, cal.spread_floors[name])
        spread = d["tree_std"] > 0  # all trees agree exactly on some charge labels: the floor alone
        assert np.all(wide[spread] > sigma[spread]) and np.all(wide[~spread] == sigma[~spread])
    # the floor: a quarter of the mean spread, so trees that agree exactly still leave an interval
    assert SPREAD_FLOOR_SHARE == 0.25
    np.testing.assert_allclose(difficulty(np.ones(2), np.zeros(2), 0.01), 0.01)
    # kept in the bundle, checked on reading; a version-10 bundle (none) scales with the domain score alone
    path = calibrated_model.save(tmp_path / "fe.npz")
    back = ElementModel.load(path).predict_grid(X)
    np.testing.assert_allclose(back["charge"]["std"], p["charge"]["std"])
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for bad in ({"charge": -1.0}, {"charge": float("nan")}, {"colour": 1.0}, [0.1], {"charge": "wide"}):
        _assert_refused(arrays, tmp_path, "interval_spread_floors", bad)
    for key in ("quantiles_in_domain", "quantiles"):
        for bad in ({"charge": [[0.1, 0.2]] * 2}, {"charge": [[0.1, float("nan")]] * 3},
                    {"charge": [[-0.1, 0.2]] * 3}, {"colour": [[0.1, 0.2]] * 3}, [[0.1, 0.2]]):
            _assert_refused(arrays, tmp_path, key, bad)
    good = {"edges": [0.01, 0.02], "quantiles": [[0.5, 1.0]] * 3}
    for bad in ({"charge": [good] * 2}, {"colour": [good] * 3}, [good] * 3,
                {"charge": [{**good, "edges": [0.02, 0.01]}] * 3}, {"charge": [{**good, "edges": [0.0, 0.01]}] * 3},
                {"charge": [{**good, "quantiles": [[0.5, 1.0]] * 2}] * 3},
                {"charge": [{**good, "quantiles": [[float("nan"), 1.0]] * 3}] * 3},
                {"charge": [{**good, "quantiles": [[-0.5, 1.0]] * 3}] * 3}, {"charge": [{**good, "more": 1}] * 3},
                {"charge": [{"edges": list(np.linspace(0.01, 1, 17)), "quantiles": [[0.5, 1.0]] * 18}] * 3}):
        _assert_refused(arrays, tmp_path, "quantiles_in_domain_by_scale", bad)
    # older bundles answer as calibrated: a version 12 (no bins) gives the spectra in the domain one
    # table; a version 11 (no in-domain quantiles) every spectrum the larger ones; a version 10 (nor
    # spread floors) scales with the domain score alone
    m = json.loads(str(arrays["manifest"]))
    d = p["charge"]
    scale = (d["tree_std"] + cal.spread_floors["charge"]) * d["domain_score"]
    one_table = np.where(d["in_domain"], np.asarray(cal.quantiles_in_domain["charge"])[band][:, 0],
                         np.asarray(cal.quantiles["charge"])[band][:, 0])
    expected = {12: one_table * scale, 11: np.asarray(cal.quantiles["charge"])[band][:, 0] * scale,
                10: np.asarray(cal.quantiles["charge"])[band][:, 0] * (0.5 + 0.5 * d["domain_score"])}
    for version, dropped in ((12, "quantiles_in_domain_by_scale"), (11, "quantiles_in_domain"),
                             (10, "interval_spread_floors")):  # each drops one more
        del m["calibration"][dropped]
        m["format_version"] = version
        m["digest"] = _bundle_digest(m)
        np.savez_compressed(tmp_path / "old.npz", **{**arrays, "manifest": np.array(json.dumps(m))})
        old = ElementModel.load(tmp_path / "old.npz").predict_grid(X)["charge"]
        np.testing.assert_allclose(old["std"], expected[version])


def test_the_domain_threshold_flags_the_configured_share_of_in_family_spectra(calibrated_model, bundled_library):
    from xanes_agent.models.training import TrainConfig, train_element

    small = dict(n_seeds=1, n_estimators=10, calibration_seeds=1, calibration_folds=2, views=(),
                 properties=("mean_nn_distance",))
    other = train_element(bundled_library.where(element="Fe"), "Fe", TrainConfig(**small, domain_quantile=0.8),
                          progress=False)
    for model, q in ((calibrated_model, TrainConfig().domain_quantile), (other, 0.8)):
        dom = model.calibration.domain
        assert model.calibration.method["domain"].startswith(f"{q:.0%} quantile")
        flagged = np.mean(dom.in_family_distance() / dom.typical > dom.threshold)
        assert abs(flagged - (1 - q)) <= 0.02
    for bad in (0.3, 1.0, float("nan")):
        with pytest.raises(ValueError, match="domain_quantile"):
            TrainConfig(domain_quantile=bad)


def test_the_trees_spread_is_the_domain_flags_second_test(calibrated_model, bundled_library, tmp_path):
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.model import ElementModel, _bundle_digest
    from xanes_agent.models.training import TrainConfig, assign_splits, with_low_windows

    dom = calibrated_model.calibration.domain
    assert dom.spread_property == "mean_nn_distance" and dom.spread_limits.shape == (3,)
    assert np.all(np.isfinite(dom.spread_limits)) and np.all(dom.spread_limits > 0)
    assert "trees' spread" in calibrated_model.calibration.method["domain"]
    # set on the training spectra cross-fitted (in-family, each scored by forests it did not train):
    # the test split's spectra, in-family and never trained on, are flagged at about the configured share
    assert "cross-fitted over 3 folds by material" in calibrated_model.calibration.method["domain"]
    lib = bundled_library.where(element="Fe")
    held = np.flatnonzero(assign_splits(lib, TrainConfig().split_seed) == "test")
    X, e0 = spectra_to_grid(lib.energy[held], lib.mu[held])
    n_spectra = int(np.isfinite(e0).sum())
    X = np.vstack(with_low_windows(X[np.isfinite(e0)]))
    p = calibrated_model.predict_grid(X)["mean_nn_distance"]
    assert np.all(p["tree_std"] >= 0) and np.median(p["tree_std"]) > 0
    disagree = p["domain_trees_disagree"]
    assert disagree.mean() <= 1 - TrainConfig().domain_quantile + 0.01
    # the distance test's limit per coverage band: a partial spectrum lies farther from whole
    # training spectra, so its limit is higher; these in-family spectra are flagged by it about as
    # often in every band (one limit for all flagged about half of them at 30 % coverage)
    band = coverage_band(np.isfinite(X).mean(axis=1))
    assert dom.far_limits[0] > dom.far_limits[1] > dom.far_limits[2]
    np.testing.assert_allclose(dom.far_limits[2], dom.threshold, rtol=0.05)  # whole spectra: the rule as before
    cap = 2 * (1 - TrainConfig().domain_quantile)  # the two tests' allowances together
    crossfit = calibrated_model.calibration.method["domain_flagged_cross_fitted"]
    for b in range(3):
        assert np.mean(p["domain_far"][band == b]) <= 0.10
        # the two tests together flag at most both allowances of the spectra the limits were set on
        # (the spread limit gives way); exact there, so the record must not exceed it
        assert 0 < crossfit[b] <= cap + 1e-9
        # new in-family spectra: the same share give or take their sampling error (two standard
        # errors of a ~100-spectrum split, counted per spectrum: its masked copies are not independent)
        assert np.mean(~p["in_domain"][band == b]) <= cap + 2 * np.sqrt(cap * (1 - cap) / n_spectra)
    assert "per coverage band" in calibrated_model.calibration.method["domain"]
    assert "the three flag 8% of them (10% allowed" in calibrated_model.calibration.method["domain"]
    # the CN maps' strata are the same per-band test: a partial spectrum beyond the whole-spectrum
    # threshold but within its band's limit gets the in-domain map, as in calibration
    cal = calibrated_model.calibration
    cn = calibrated_model.predict_grid(X)["coordination_number"]
    mid = (p["domain_score"] > dom.threshold) & ~p["domain_far"]
    assert cal.confidence_knots_far is not None and mid.sum() >= 10
    np.testing.assert_allclose(cn["proba"][mid], apply_confidence_map(cn["raw_proba"][mid], *cal.confidence_knots))
    far = p["domain_far"]
    np.testing.assert_allclose(cn["proba"][far], apply_confidence_map(cn["raw_proba"][far], *cal.confidence_knots_far))
    # the flag reads the two tests together (bundle format 11): the ratios to their limits
    r_far = p["domain_score"] / dom.far_limits[band]
    r_spread = p["tree_std"] / dom.spread_limits[band]
    expect = (np.maximum(r_far, r_spread) > dom.alone_limits[band]) \
        | (np.sqrt(r_far * r_spread) > dom.joint_limits[band])
    np.testing.assert_array_equal(p["in_domain"], ~expect)
    assert np.all(dom.alone_limits >= 1) and np.all(dom.joint_limits < dom.alone_limits)
    # trees that disagree beyond the limit flag the spectrum; the CN probability is not moved by it
    # (its maps' strata were calibrated on the distance test alone)
    before = calibrated_model.predict_grid(X[:20])
    saved = dom.spread_limits
    try:
        dom.spread_limits = np.zeros(3)  # below any spread the trees show
        after = calibrated_model.predict_grid(X[:20])
    finally:
        dom.spread_limits = saved
    spread = before["mean_nn_distance"]["tree_std"] > 0  # a zero spread is beyond no limit
    assert spread.sum() >= 15
    assert np.all(after["charge"]["domain_trees_disagree"][spread]) and not np.any(after["charge"]["in_domain"][spread])
    np.testing.assert_allclose(after["coordination_number"]["proba"], before["coordination_number"]["proba"])
    # the bundle keeps the limits, and refuses limits that are not limits
    path = calibrated_model.save(tmp_path / "fe.npz")
    np.testing.assert_allclose(ElementModel.load(path).calibration.domain.spread_limits, saved)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.testing.assert_allclose(ElementModel.load(path).calibration.domain.far_limits, dom.far_limits)
    np.testing.assert_allclose(ElementModel.load(path).calibration.domain.joint_limits, dom.joint_limits)
    for key in ("domain_spread_limits", "domain_far_limits", "domain_alone_limits", "domain_joint_limits"):
        for bad in ([-1.0, 0.1, 0.1], [0.1, 0.1], "wide"):
            _assert_refused(arrays, tmp_path, key, bad)
    # a version-10 bundle (no joint limits) flags where either test passes its own limit, as trained
    m = json.loads(str(arrays["manifest"]))
    del m["calibration"]["domain_alone_limits"], m["calibration"]["domain_joint_limits"]
    m["format_version"] = 10
    m["digest"] = _bundle_digest(m)
    np.savez_compressed(tmp_path / "v10.npz", **{**arrays, "manifest": np.array(json.dumps(m))})
    p10 = ElementModel.load(tmp_path / "v10.npz").predict_grid(X)["mean_nn_distance"]
    np.testing.assert_array_equal(p10["in_domain"], ~p10["domain_far"] & ~p10["domain_trees_disagree"])
    # a version-7 bundle (no band limits for the distance test) flags at its one threshold, as trained
    m = json.loads(str(arrays["manifest"]))
    del m["calibration"]["domain_far_limits"]
    m["format_version"] = 7
    m["digest"] = _bundle_digest(m)
    np.savez_compressed(tmp_path / "v7.npz", **{**arrays, "manifest": np.array(json.dumps(m))})
    v7 = ElementModel.load(tmp_path / "v7.npz")
    far7 = v7.predict_grid(X)["mean_nn_distance"]["domain_far"]
    np.testing.assert_array_equal(far7, v7.calibration.domain.score(v7.domain_features(X)) > dom.threshold)
    assert np.mean(far7[band == 0]) > np.mean(p["domain_far"][band == 0])


def test_splits_hold_out_whole_materials_and_train_on_the_rest(bundled_library):
    from xanes_agent.models.training import assign_splits

    lib = bundled_library.where(element="Fe")
    splits = assign_splits(lib, 3)
    np.testing.assert_array_equal(splits == "test", lib.split == "test")  # the library's own held-out rows
    assert set(splits.tolist()) == {"train", "test"}
    # a collection without a test split: a tenth of its materials, seeded, none on both sides
    user = lib[np.flatnonzero(lib.split != "test")]
    user.split[:] = ""
    splits = assign_splits(user, 3)
    test_m = set(user.material_id[splits == "test"].tolist())
    assert len(test_m) == len(set(user.material_id.tolist())) // 10
    assert not test_m & set(user.material_id[splits == "train"].tolist())
    np.testing.assert_array_equal(assign_splits(user, 3), splits)


def test_the_cn_map_is_kept_only_where_it_lowers_the_ece_on_folds_it_was_not_fitted_on(calibrated_model):
    from xanes_agent.models.calibration import fit_calibration, map_ece_across_folds

    rng = np.random.default_rng(5)
    n = 600
    folds = np.arange(n) % 3
    classes = np.array([4.0, 5.0, 6.0])
    domain = calibrated_model.calibration.domain

    # uniformly over-confident forests (say 0.9, right 60 %): the map carries over to a new fold
    conf = rng.uniform(0.8, 1.0, n)
    proba = np.column_stack([conf, 1 - conf, np.zeros(n)])
    right = rng.random(n) < 0.6
    raw, mapped = map_ece_across_folds(proba, np.where(right, 0, 1), folds)
    assert mapped < raw - 0.2
    cal = fit_calibration({"coordination_number": np.where(right, 4.0, 5.0)}, {}, proba, classes,
                          np.full(n, domain.threshold / 2), np.ones(n), np.ones(n, bool), domain, {},
                          groups=np.arange(n) // 3, folds=folds)
    assert cal.method["cn_ece_unseen_folds"] == pytest.approx({"forests": raw, "map": mapped})
    assert cal.confidence_knots != ([0.0, 1.0], [0.0, 1.0]) and "cn_probability" not in cal.method  # kept
    # right as often as stated overall (0.7), but every fold fails its own way (all right, or 55 %):
    # fitted on the other folds, the map says the wrong thing for the new one
    conf = np.full(n, 0.7)
    proba = np.column_stack([conf, 1 - conf, np.zeros(n)])
    right = np.where(folds == 0, True, rng.random(n) < 0.55)
    raw, mapped = map_ece_across_folds(proba, np.where(right, 0, 1), folds)
    assert mapped > raw + 0.1
    dropped = fit_calibration({"coordination_number": np.where(right, 4.0, 5.0)}, {}, proba, classes,
                              np.full(n, domain.threshold / 2), np.ones(n), np.ones(n, bool), domain, {},
                              groups=np.arange(n) // 3, folds=folds)
    assert dropped.confidence_knots == ([0.0, 1.0], [0.0, 1.0]) and dropped.confidence_knots_far is None
    assert dropped.method["cn_probability"].startswith("the forests' own")  # and `info` says so
    # the weighted ECE: one parent of many rows weighs as much as one of a single row
    w = np.r_[np.full(10, 0.1), 1.0]
    assert expected_calibration_error(np.tile([[0.9, 0.1, 0.0]], (11, 1)), np.r_[np.zeros(10), 1], weights=w) == \
        pytest.approx(abs(0.5 - 0.9))


def test_the_cn_map_across_codes_is_fitted_on_the_other_codes_spectra_and_kept_only_where_it_helps():
    """Another code's spectra are right less often at the same forest confidence than new
    structures of the training code: their own map learns that (and is dropped where, fitted on
    some folds, it would mislead on another)."""
    from xanes_agent.models.calibration import IDENTITY_KNOTS, across_codes_confidence_map

    rng = np.random.default_rng(11)
    n = 900
    folds = np.arange(n) % 3
    groups = np.arange(n) // 3
    conf = rng.uniform(0.6, 1.0, n)
    proba = np.column_stack([conf, 1 - conf, np.zeros(n)])
    right = rng.random(n) < conf - 0.25  # over-confident by 0.25 on the other code
    knots, info = across_codes_confidence_map(proba, np.where(right, 0, 1), groups, folds)
    assert knots != IDENTITY_KNOTS and info["rule"] == "isotonic map"
    assert info["ece_unseen_folds"]["map"] < info["ece_unseen_folds"]["forests"] - 0.15
    assert info["ece_forests"] == pytest.approx(0.25, abs=0.04) and info["n"] == n
    stated = apply_confidence_map(proba, *knots)[:, 0]  # the predicted class's probability
    assert abs(stated.mean() - right.mean()) < 0.03  # states it as often as it is right
    # each fold wrong its own way (all right, or 45 %): no map carries over, the forests' own stays
    conf = np.full(n, 0.7)
    proba = np.column_stack([conf, 1 - conf, np.zeros(n)])
    right = np.where(folds == 0, True, rng.random(n) < 0.45)
    knots, info = across_codes_confidence_map(proba, np.where(right, 0, 1), groups, folds)
    assert knots == IDENTITY_KNOTS and info["rule"].startswith("the forests' own")


def test_a_cn_map_for_out_of_domain_spectra_learns_their_lower_accuracy_and_survives_the_bundle(
        calibrated_model, bundled_library, tmp_path):
    from xanes_agent.models.calibration import fit_calibration
    from xanes_agent.models.model import BundleError, ElementModel, _bundle_digest

    rng = np.random.default_rng(3)
    n = 400
    conf = rng.uniform(0.5, 1.0, n)
    far = np.arange(n) >= n // 2
    right = rng.random(n) < np.where(far, 0.5 * conf, conf)  # far spectra: right half as often
    proba = np.column_stack([conf, 1 - conf, np.zeros(n)])
    y = np.where(right, 4.0, 5.0)
    groups = np.arange(n) // 4  # four spectra per parent
    domain = calibrated_model.calibration.domain
    score = np.where(far, domain.threshold * 2, domain.threshold / 2)
    cal = fit_calibration({"coordination_number": y}, {}, proba, np.array([4.0, 5.0, 6.0]), score,
                          np.ones(n), np.ones(n, bool), domain, {}, groups=groups, cn_map="domain")
    near_p = apply_confidence_map(proba[:5], *cal.confidence_knots)[:, 0]
    far_p = apply_confidence_map(proba[:5], *cal.confidence_knots_far)[:, 0]
    assert np.all(far_p < near_p)
    one = fit_calibration({"coordination_number": y}, {}, proba, np.array([4.0, 5.0, 6.0]), score,
                          np.ones(n), np.ones(n, bool), domain, {}, groups=groups)
    assert one.confidence_knots_far is None

    model = calibrated_model
    saved = model.calibration
    try:
        model.calibration = cal
        path = model.save(tmp_path / "fe_far.npz")
    finally:
        model.calibration = saved
    back = ElementModel.load(path)
    assert back.calibration.confidence_knots_far == cal.confidence_knots_far
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    m = json.loads(str(arrays["manifest"]))
    m["calibration"]["confidence_knots_out_of_domain"] = [[0.0, 2.0], [0.5, 0.4]]  # not a map
    m["digest"] = _bundle_digest(m)
    arrays["manifest"] = np.array(json.dumps(m))
    np.savez_compressed(tmp_path / "bad_knots.npz", **arrays)
    with pytest.raises(BundleError, match="calibration record is malformed"):
        ElementModel.load(tmp_path / "bad_knots.npz")


def _report(in_domain=True, p=0.95, std=0.005):
    pred = {"coordination_number": {"prediction": 6, "probability": p, "in_domain": in_domain},
            "mean_nn_distance": {"prediction": 2.0, "std": std, "in_domain": in_domain},
            "charge": {"prediction": 3.0, "std": 0.01, "in_domain": in_domain}}
    return {"edge_located": True, "predictions": pred}


def test_stop_rules_trust_only_calibrated_in_domain_answers():
    assert stop_reason(_report(), DEFAULT_THRESHOLDS).startswith("confident")
    assert stop_reason(_report(in_domain=False), DEFAULT_THRESHOLDS) == ""
    assert stop_reason(_report(p=0.5), DEFAULT_THRESHOLDS) == ""
    assert stop_reason(_report(std=0.05), DEFAULT_THRESHOLDS) == ""
    d = [(4, 2.0, 1.5)] * 3
    assert stable_reason(d, 1.0, DEFAULT_STABILITY, probability=0.9).startswith("stable")
    # a CN at 0.5 is not a decision: the scan may stop, but never says "stable"
    assert stable_reason(d, 1.0, DEFAULT_STABILITY, probability=0.5).startswith("settled, CN undecided")


def test_measurement_noise_alone_does_not_put_a_spectrum_out_of_domain(bundled_library):
    """With the measured-like copies a live model trains on, the domain scale includes each
    feature's noise spread: a held-out spectrum with counting noise stays in domain, spectra of
    another element (other edge shapes on the same relative grid) are still flagged, less often."""
    from xanes_agent.models.features import make_featurizer, spectra_to_grid
    from xanes_agent.models.training import live_config, measurement_copies

    cfg = live_config()
    feat = make_featurizer("polynomial", cfg.grid)
    cu = bundled_library.where(element="Cu", source="feff10-project")
    X, _ = spectra_to_grid(cu.energy, cu.mu, cfg.grid, cfg.normalization)
    X = X[np.isfinite(X).all(axis=1)]
    train, held = X[:-40], X[-40:]
    rng = np.random.default_rng(0)
    measured = feat.transform(measurement_copies(train, cfg.grid, cfg.noise, cfg.e0_jitter, rng))

    def calibrated(model):
        d = model.in_family_distance()
        model.typical = float(np.median(d))
        model.threshold = float(np.quantile(d, 0.95) / model.typical)
        return model

    plain = calibrated(DomainModel.fit(feat.transform(train), rng))
    aware = calibrated(DomainModel.fit(feat.transform(train), rng, measured))
    noisy = feat.transform(held + rng.normal(size=held.shape) * 2e-3)  # 0.2 % of the edge step
    assert np.mean(plain.score(noisy) > plain.threshold) > 0.5  # the flag the agent raised on every measurement
    assert np.mean(aware.score(noisy) > aware.threshold) <= 0.15
    ti = bundled_library.where(element="Ti", source="feff10-project")
    Xt, _ = spectra_to_grid(ti.energy, ti.mu, cfg.grid, cfg.normalization)
    Xt = Xt[np.isfinite(Xt).all(axis=1)]
    # the price: less separation. Spectra of another element on the same relative grid are still
    # flagged, less often (measured: Ti 0.55 plain, 0.34 aware; OmniXAS FEFF9 Cu 0.51 / 0.25); a
    # mirrored spectrum always is. A featureless step scores far above every held-out spectrum
    # (1.82-1.86 for widths 1-4 eV against at most 1.22 with noise), but with the session-13
    # library's Cu spectra it sits at the 95 % flag itself (1.85): more unusual than any held-out
    # spectrum, not reliably flagged
    ti_rate = np.mean(aware.score(feat.transform(Xt)) > aware.threshold)
    assert ti_rate >= 0.2
    g = cfg.grid.energies
    step = 0.5 + np.arctan(g / 2.0) / np.pi
    assert aware.score(feat.transform((step / step[-1])[None]))[0] > 1.3 * aware.score(noisy).max()
    assert np.all(aware.score(feat.transform(2.0 - held)) > aware.threshold)


def test_intervals_across_codes_hold_for_another_codes_spectra_of_new_structures(bundled_library, tmp_path, caplog):
    """A FEFF10-trained Cu model, calibrated across codes on the OmniXAS FEFF 9 spectra of some
    parents (which never train it), states intervals that hold for FEFF 9 spectra of *other*
    parents. Its same-code intervals did not while they scaled with the domain score alone (90 %
    intervals covered 0.74-0.78 of them); with the trees' spread in the scale they cover 0.90 here."""
    from xanes_agent.agent import ModelStore
    from xanes_agent.data.library import PROJECT_SOURCE, parent_groups
    from xanes_agent.data.omnixas import SOURCE as OMNIXAS
    from xanes_agent.models.evaluation import joint_group_folds
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.model import BundleError, ElementModel, _bundle_digest
    from xanes_agent.models.training import TrainConfig, train_element

    project = bundled_library.where(element="Cu", source=PROJECT_SOURCE)
    omni = bundled_library.where(element="Cu", source=OMNIXAS)
    omni = omni[np.sort(np.random.default_rng(0).choice(len(omni), 2500, replace=False))]
    pp, po = parent_groups(project), parent_groups(omni)
    fp, fo = joint_group_folds(pp, po, 5)
    model = train_element(project, "Cu", TrainConfig(n_seeds=2, n_estimators=30, calibration_seeds=1),
                          progress=False, train_mask=fp != 0, other=omni[np.flatnonzero(fo != 0)])
    ac = model.calibration.method["across_codes"]
    assert ac["source"] == OMNIXAS and ac["n_parents"] > 300
    assert model.across_codes_for() == ["charge", "mean_nn_distance"]
    # the CN probability gets its own map across codes, fitted on the same fold models' FEFF 9 rows
    assert ac["cn"]["n"] > 5000 and "ece_unseen_folds" in ac["cn"]
    knots_across = model.calibration.confidence_knots_across
    assert knots_across is not None

    X, e0 = spectra_to_grid(omni.energy, omni.mu)
    te = np.flatnonzero((fo == 0) & np.isfinite(e0))
    y = omni.labels["mean_nn_distance"][te]
    _, inv, counts = np.unique(po[te], return_inverse=True, return_counts=True)

    def coverage90(m, X=X):
        lo, hi = m.predict_grid(X[te])["mean_nn_distance"]["interval90"].T
        return float(np.average((y >= lo) & (y <= hi), weights=1.0 / counts[inv]))

    same = coverage90(model)
    cn_same = model.predict_grid(X[te[:50]])["coordination_number"]
    model.intervals = "across-codes"
    across = coverage90(model)
    cn = model.predict_grid(X[te[:50]])["coordination_number"]
    np.testing.assert_allclose(cn["proba"], apply_confidence_map(cn["raw_proba"], *knots_across))
    assert cn["across_codes"].all() and not cn_same["across_codes"].any()
    np.testing.assert_array_equal(cn["prediction"], cn_same["prediction"])  # only the stated probability moves
    # with the trees' spread in the scale (bundle format 11) the same-code intervals hold here too:
    # the spread sees what another code does to a spectrum, the distance to the training spectra did not
    assert 0.83 <= across <= 0.97 and 0.83 <= same <= 0.97, (same, across)
    # partial spectra (half the window measured) get their own band's across-codes quantile
    assert np.asarray(model.calibration.across_codes["mean_nn_distance"]).shape == (3, 2)
    from xanes_agent.models.training import mask_low_window

    assert 0.83 <= coverage90(model, mask_low_window(X, 0.5)) <= 0.97

    back = ElementModel.load(model.save(tmp_path / "cu.npz"))
    assert back.intervals == "same-code" and back.calibration.across_codes == model.calibration.across_codes
    assert back.calibration.confidence_knots_across == (list(knots_across[0]), list(knots_across[1]))
    store = ModelStore(models={"Cu": back}, intervals="across-codes")
    np.testing.assert_allclose(store.predictor("Cu").model.predict_grid(X[te[:5]])["charge"]["interval68"],
                               model.predict_grid(X[te[:5]])["charge"]["interval68"])
    # the live path says which intervals it states, in the agent's event data too
    from types import SimpleNamespace

    from xanes_agent.agent.output import event_data

    state = store.predictor("Cu").update(np.asarray(omni.energy[te[0]]), np.asarray(omni.mu[te[0]]))
    assert state.predictions["mean_nn_distance"]["across_codes"]
    assert state.predictions["coordination_number"]["across_codes"]  # the live path's CN map too
    data = event_data(state, back, SimpleNamespace(n_dropped=0, n_rejected=0), [], 100)
    assert data["intervals_across_codes"] is True
    with caplog.at_level("WARNING"):
        ModelStore(models={"Fe": train_element(bundled_library.where(element="Fe"), "Fe",
                                               TrainConfig(n_seeds=1, n_estimators=5, calibration_seeds=1, views=()),
                                               progress=False)}, intervals="across-codes").predictor("Fe")
    assert "no across-codes calibration" in caplog.text

    with np.load(tmp_path / "cu.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    m = json.loads(str(arrays["manifest"]))
    m["calibration"]["quantiles_across_codes"]["mean_nn_distance"] = [-1.0, 0.1]
    m["digest"] = _bundle_digest(m)
    arrays["manifest"] = np.array(json.dumps(m))
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BundleError, match="quantiles_across_codes"):
        ElementModel.load(tmp_path / "bad.npz")
    with np.load(tmp_path / "cu.npz", allow_pickle=False) as z:
        m = json.loads(str(z["manifest"]))
    m["calibration"]["confidence_knots_across_codes"] = [[0.0, 0.5], [0.2, 1.7]]  # a probability above 1
    m["digest"] = _bundle_digest(m)
    arrays["manifest"] = np.array(json.dumps(m))
    np.savez_compressed(tmp_path / "bad_knots.npz", **arrays)
    with pytest.raises(BundleError, match="confidence-map knots"):
        ElementModel.load(tmp_path / "bad_knots.npz")


def test_a_model_trained_on_experiment_like_copies_is_calibrated_on_them(bundled_library):
    """With ``realism_copies`` the domain scale and the interval scores come from experiment-like
    copies too. Without that, every experiment-like spectrum of a new structure was flagged out of
    domain (1.00) and the 68 % interval covered 0.29 of clean held-out spectra (measured)."""
    from xanes_agent.data.library import PROJECT_SOURCE, parent_groups
    from xanes_agent.models.evaluation import group_folds
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.realism import Realism, experiment_like_grid
    from xanes_agent.models.training import TrainConfig, train_element

    cu = bundled_library.where(element="Cu", source=PROJECT_SOURCE)
    folds = group_folds(parent_groups(cu), 5)
    model = train_element(cu, "Cu", TrainConfig(n_seeds=1, n_estimators=20, calibration_seeds=1, realism_copies=1,
                                                    views=()),
                          progress=False, train_mask=folds != 0)
    assert "experiment-like" in model.calibration.method["domain"]
    te = np.flatnonzero(folds == 0)
    X, _ = spectra_to_grid(cu.energy, cu.mu)
    Xc, src = experiment_like_grid(cu.energy, cu.mu, te, Realism(copies=2), rng=np.random.default_rng(5))
    keep = np.isfinite(Xc).mean(axis=1) > 0.9
    y = cu.labels["mean_nn_distance"]
    for XX, yy in ((X[te], y[te]), (Xc[keep], y[src[keep]])):
        p = model.predict_grid(XX)["mean_nn_distance"]
        lo, hi = p["interval68"].T
        assert np.mean(~p["in_domain"]) <= 0.2
        assert 0.45 <= np.mean((yy >= lo) & (yy <= hi)) <= 0.9  # one fold, 20 trees: 0.50-0.74 measured


def test_the_two_tests_read_together_flag_the_allowance_and_see_what_each_alone_misses():
    from xanes_agent.models.calibration import ALONE_QUANTILE, DomainModel, joint_flag_limits

    rng = np.random.default_rng(1)
    coverage = np.repeat([0.3, 0.6, 1.0], 1000)
    band = np.repeat([0, 1, 2], 1000)
    # in-family ratios to each test's 95 % limit: independent, 5 % of each beyond 1
    r_far, r_spread = rng.gamma(8, 1 / 8, 3000), rng.gamma(8, 1 / 8, 3000)
    r_far /= np.quantile(r_far, 0.95)
    r_spread /= np.quantile(r_spread, 0.95)
    alone, joint = joint_flag_limits(r_far, r_spread, coverage, 0.10)
    for b in range(3):
        rows = band == b
        assert alone[b] == pytest.approx(np.quantile(np.maximum(r_far, r_spread)[rows], ALONE_QUANTILE), rel=0.02)
        assert 0 < joint[b] < alone[b]
    dom = DomainModel(center=np.zeros(1), scale=np.ones(1), reference=np.zeros((1, 1), np.float32),
                      far_limits=np.ones(3), spread_limits=np.ones(3), alone_limits=alone, joint_limits=joint)
    flagged = dom.flags_from_ratios(r_far, r_spread, coverage)
    for b in range(3):  # the three rules flag the allowance, not more
        assert 0.095 <= flagged[band == b].mean() <= 0.10
    # each test alone at its own limit flags its 5 %, together up to 10 %: the rule flags as many,
    # but spectra near both limits at once rather than beyond one
    near_both = np.array([0.9, 0.9]), np.array([0.9, 0.2])
    assert list(dom.flags_from_ratios(*near_both, np.ones(2))) == [True, False]
    # one far beyond its limit is flagged whatever the other says
    assert dom.flags_from_ratios(np.array([3.0]), np.array([0.0]), np.ones(1))[0]
    # the whole DomainModel.flags: ratios from the score and spread, and each test against its own limit
    out, far, disagree = dom.flags(np.array([1.05, 0.95]), np.array([0.1, 0.95]), np.ones(2))
    assert list(far) == [True, False] and list(disagree) == [False, False] and list(out) == [False, True]
    # without joint limits (bundles before format 11): either test beyond its own limit, as before
    dom.alone_limits = dom.joint_limits = None
    out, far, disagree = dom.flags(np.array([1.05, 0.95]), np.array([0.1, 0.95]), np.ones(2))
    assert list(out) == [True, False]
    # a band with too few rows keeps the tests alone
    alone, joint = joint_flag_limits(r_far[:10], r_spread[:10], np.full(10, 1.0), 0.10)
    assert alone[2] == 1.0 and np.isinf(joint[2])

