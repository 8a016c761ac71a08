"""Training on the bundled reference library, bundles, packed forests."""

import json
import re
import zipfile

import numpy as np
import pytest
from sklearn.base import clone

from xanes_agent.data.library import load_bundled_library
from xanes_agent.models.ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor, random_oversample
from xanes_agent.models.features import Grid
from xanes_agent.models.model import BUNDLE_VERSION, BundleError, ElementModel
from xanes_agent.models.packed import PackedForests
from xanes_agent.models.training import TrainConfig, augment, train_element


@pytest.fixture(scope="module")
def cu_subset():
    lib = load_bundled_library().where(element="Cu", source="omnixas-feff9")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(lib), 900, replace=False))
    return lib[keep]


@pytest.fixture(scope="module")
def cu_model(cu_subset):
    return train_element(cu_subset, "Cu", TrainConfig(n_seeds=3, n_estimators=30), progress=False)


def test_training_beats_baselines(cu_model):
    cn = cu_model.properties["coordination_number"].metrics
    assert cn["accuracy_mean"] > cn["modal_baseline_accuracy"] + 0.1
    assert cu_model.properties["mean_nn_distance"].metrics["r2_mean"] > 0.3
    assert cu_model.properties["charge"].label == "oxidation_state"  # named as what the data carry
    assert cu_model.properties["charge"].metrics["r2_mean"] > 0.0
    cc = cu_model.coverage_curve
    assert len(cc["coordination_number"]) == len(cc["fractions"])


def test_training_is_deterministic(cu_subset):
    cfg = TrainConfig(n_seeds=2, n_estimators=5, properties=("coordination_number",))
    a = train_element(cu_subset, "Cu", cfg, progress=False)
    b = train_element(cu_subset, "Cu", cfg, progress=False)
    pa, pb = a.properties["coordination_number"].packed, b.properties["coordination_number"].packed
    np.testing.assert_array_equal(pa.threshold, pb.threshold)


def test_bundle_round_trip(cu_model, cu_subset, tmp_path):
    path = cu_model.save(tmp_path / "cu.npz")
    back = ElementModel.load(path, expect_grid=Grid(), expect_featurization="pointwise", expect_element="Cu")
    from xanes_agent.models.features import spectra_to_grid

    X, _ = spectra_to_grid(cu_subset.energy[:20], cu_subset.mu[:20])
    p1, p2 = cu_model.predict_grid(X), back.predict_grid(X)
    np.testing.assert_allclose(p1["coordination_number"]["proba"], p2["coordination_number"]["proba"])
    np.testing.assert_allclose(p1["mean_nn_distance"]["prediction"], p2["mean_nn_distance"]["prediction"])
    assert back.training_data_hash == cu_model.training_data_hash
    assert "scikit-learn" in back.versions


def _rewrite(path, out, mutate):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    np.savez_compressed(out, **arrays)
    return out


def test_tampered_bundle_refused(cu_model, tmp_path):
    path = cu_model.save(tmp_path / "cu.npz")

    def tamper(a):
        a["coordination_number__threshold"] = a["coordination_number__threshold"] + 1e-3

    bad = _rewrite(path, tmp_path / "tampered.npz", tamper)
    with pytest.raises(BundleError, match="does not match its sha256"):
        ElementModel.load(bad)


def test_wrong_grid_featurization_version_refused(cu_model, tmp_path):
    path = cu_model.save(tmp_path / "cu.npz")
    with pytest.raises(BundleError, match="grid"):
        ElementModel.load(path, expect_grid=Grid(-10, 40, 100))
    with pytest.raises(BundleError, match="polynomial"):
        ElementModel.load(path, expect_featurization="polynomial")

    def bump(a):
        m = json.loads(str(a["manifest"]))
        m["format_version"] = 99
        a["manifest"] = np.array(json.dumps(m))

    with pytest.raises(BundleError, match="format version 99"):
        ElementModel.load(_rewrite(path, tmp_path / "v99.npz", bump))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BundleError, match="not a readable model bundle"):
        ElementModel.load(garbage)
    assert not zipfile.is_zipfile(garbage)


def test_packed_forests_equal_sklearn_with_nan():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 30))
    y = np.where(X[:, 0] > 0.5, 6, np.where(X[:, 1] > 0, 5, 4))
    X[rng.random(X.shape) < 0.15] = np.nan
    clf = SeedEnsembleClassifier(n_seeds=3, n_estimators=15).fit(X, y)
    reg = SeedEnsembleRegressor(n_seeds=3, n_estimators=15).fit(X, np.nan_to_num(X[:, 2]))
    Xt = rng.normal(size=(60, 30))
    Xt[rng.random(Xt.shape) < 0.3] = np.nan
    pc = PackedForests.from_sklearn(clf.estimators_)
    np.testing.assert_allclose(pc.per_forest(Xt), clf.predict_proba_per_seed(Xt), atol=1e-12)
    pr = PackedForests.from_sklearn(reg.estimators_)
    np.testing.assert_allclose(pr.per_forest(Xt)[:, :, 0], reg.predict_per_seed(Xt), atol=1e-12)


def test_oversampling_balances_training_classes_only():
    X = np.arange(20)[:, None].astype(float)
    y = np.array([4] * 14 + [5] * 4 + [6] * 2)
    Xo, yo = random_oversample(X, y, 0)
    assert dict(zip(*np.unique(yo, return_counts=True))) == {4: 14, 5: 14, 6: 14}
    assert set(Xo[yo == 6, 0]) <= {18.0, 19.0}


def test_weighted_oversampling_matches_class_weights_and_fit_uses_them():
    """With sample weights, over-sampling matches the classes' total weights (not their rows), and
    the weights reach the forests: a weighted fit differs from an unweighted one and equals
    scikit-learn's own weighted forest for one seed without over-sampling."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(1)
    y = np.array([4] * 14 + [5] * 4 + [6] * 2)
    w = np.where(y == 4, 0.1, 1.0)  # 14 rows of a 25-spectrum family: 1.4 in all
    X = np.arange(20)[:, None].astype(float)
    Xo, yo, wo = random_oversample(X, y, 0, sample_weight=w)
    totals = {c: wo[yo == c].sum() for c in (4, 5, 6)}
    assert totals[4] == pytest.approx(4.0) and totals[5] == pytest.approx(4.0) and totals[6] == pytest.approx(4.0)
    assert 5 not in yo[len(y):]  # the heaviest class (4 x 1.0, not the 14 rows of 0.1) is not drawn
    with pytest.raises(ValueError, match="sample_weight"):
        SeedEnsembleRegressor(n_seeds=1).fit(X, y.astype(float), sample_weight=-w)

    Xr = rng.normal(size=(200, 5))
    yr = Xr[:, 0] + rng.normal(0, 0.3, 200)
    wr = rng.uniform(0.05, 1.0, 200)
    ours = SeedEnsembleRegressor(n_seeds=1, n_estimators=20, random_state=3).fit(Xr, yr, sample_weight=wr)
    ref = RandomForestRegressor(n_estimators=20, max_features=1 / 3, random_state=3).fit(Xr, yr, sample_weight=wr)
    np.testing.assert_allclose(ours.predict(Xr), ref.predict(Xr), atol=1e-12)
    plain = SeedEnsembleRegressor(n_seeds=1, n_estimators=20, random_state=3).fit(Xr, yr)
    assert np.abs(plain.predict(Xr) - ours.predict(Xr)).max() > 1e-3
    clf = SeedEnsembleClassifier(n_seeds=2, n_estimators=10).fit(Xr, np.where(yr > 0, 6, 4),
                                                                   sample_weight=wr)
    assert clf.predict(Xr).shape == (200,)


def test_estimators_clone():
    c = clone(SeedEnsembleClassifier(n_seeds=2, max_features=0.5))
    assert c.get_params()["max_features"] == 0.5 and not hasattr(c, "estimators_")
    with pytest.raises(TypeError):
        SeedEnsembleRegressor(3, 10)  # keyword-only, as scikit-learn's own estimators


def test_extremely_randomized_trees_fit_pack_and_route_nan_like_the_forests():
    """``trees="extra"`` (the regressors' since session 36) fits scikit-learn's ExtraTrees, packs
    into the same arrays with the same answers, NaN included; an unknown kind is refused by name."""
    from sklearn.ensemble import ExtraTreesRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.nan_to_num(X[:, 0]) + 0.1 * rng.normal(size=200)
    est = clone(SeedEnsembleRegressor(n_seeds=2, n_estimators=8, trees="extra")).fit(X, y)
    assert all(isinstance(e, ExtraTreesRegressor) for e in est.estimators_)
    packed = PackedForests.from_sklearn(est.estimators_, est.columns_)
    np.testing.assert_allclose(packed.per_forest(X).mean(axis=0)[:, 0], est.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="trees 'boosted'"):
        SeedEnsembleRegressor(n_seeds=1, n_estimators=2, trees="boosted").fit(X, y)
    with pytest.raises(ValueError, match="regressor_trees 'boosted'"):
        TrainConfig(regressor_trees="boosted")


def test_seed_ensembles_take_any_random_state():
    """An int reproduces the study's seeds (random_state + s); None, a RandomState or a Generator
    draws them (an int arithmetic on None used to fail)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.where(X[:, 0] > 0.3, 6, np.where(X[:, 0] < -0.3, 4, 5))
    a = SeedEnsembleClassifier(n_seeds=3, n_estimators=5, random_state=7).fit(X, y)
    assert [e.random_state for e in a.estimators_] == [7, 8, 9]
    for rs in (None, np.random.RandomState(1), np.random.default_rng(2)):
        r = SeedEnsembleRegressor(n_seeds=3, n_estimators=5, random_state=rs).fit(X, X[:, 1])
        assert len({e.random_state for e in r.estimators_}) == 3
    b = SeedEnsembleClassifier(n_seeds=3, n_estimators=5, random_state=np.random.RandomState(3)).fit(X, y)
    c = SeedEnsembleClassifier(n_seeds=3, n_estimators=5, random_state=np.random.RandomState(3)).fit(X, y)
    assert np.array_equal(b.predict_proba(X), c.predict_proba(X))
    pipe = make_pipeline(StandardScaler(), SeedEnsembleClassifier(n_seeds=2, n_estimators=5)).fit(X, y)
    assert pipe.score(X, y) > 0.8


def test_augment_masks():
    X = np.ones((10, 100))
    A, src = augment(X, 2, np.random.default_rng(0))
    assert A.shape == (30, 100) and np.array_equal(src[:10], np.arange(10))
    low = A[10:20]
    for row in low:  # low-energy windows: a prefix is kept, the rest is NaN
        k = np.argmax(np.isnan(row)) if np.isnan(row).any() else 100
        assert not np.isnan(row[:k]).any() and np.isnan(row[k:]).all()
    assert np.isnan(A[20:]).any(axis=1).all()


def test_cli_train_info_evaluate_report(tmp_path, cu_subset, capsys):
    from xanes_agent.cli import main
    from xanes_agent.data import write_library

    lib = tmp_path / "lib.npz"
    write_library(cu_subset, lib)
    models = tmp_path / "models"
    assert main(["train", "--library", str(lib), "--elements", "Cu", "--seeds", "2", "--trees", "10",
                 "--featurization", "polynomial", "pointwise", "--out", str(models), "--quiet"]) == 0
    bundle = models / "Cu-polynomial-post_edge.npz"
    assert bundle.exists() and (models / "Cu-pointwise-post_edge.npz").exists()
    assert main(["info", str(bundle)]) == 0
    info = capsys.readouterr().out
    assert "uncertainty: calibrated out of family" in info
    assert re.search(r"domain flag limits: score [0-9.]+ / [0-9.]+ / [0-9.]+, the distance trees' spread "
                     r"([0-9.]+|none) / ([0-9.]+|none) / ([0-9.]+|none) A", info)
    assert re.search(r"read together: out of domain where either passes [0-9.]+ / [0-9.]+ / [0-9.]+ x its limit, "
                     r"or the geometric mean of the two ratios passes ([0-9.]+|none) / ([0-9.]+|none)", info)
    assert "CN forests: a committee of views, the seeds taking turns: E0-15..E0+45 eV, E0-15..E0+8 eV" in info
    # in the domain, the intervals per bin of the scale: edges and each bin's 68/90 % quantiles, per band
    assert re.search(r"in the domain per bin of the scale \(edges; 68/90 % per bin\), per coverage band: "
                     r"[0-9.e/ -]*\([0-9.e/, -]+\); [0-9.e/ -]*\([0-9.e/, -]+\); [0-9.e/ -]*\([0-9.e/, -]+\)\n", info)
    assert re.search(r"CN answer: the forests x 0.75 \+ the vote x 0.25 of the 5 nearest of \d+ parent structures",
                     info)
    # the CN map's record on parents it was not fitted on, unless the CN probability is not mapped
    assert ("the map was not fitted on: ECE" in info) != ("not calibrated: a CN class" in info)
    assert main(["evaluate", str(bundle), "--library", str(lib), "--json", str(tmp_path / "m.json"),
                 "--permutation", "1"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert len(metrics["coordination_number"]["permutation_importance_top10"]) == 10
    assert "forest_ensemble_accuracy" in metrics["coordination_number"]  # the model's answer is the blend
    top = capsys.readouterr().out.split("permutation top-10: ")[1].splitlines()[0].split(", ")
    # each feature with its energy range (the white-line energy is a feature of its own)
    assert len(top) == 10 and all(n.endswith(" eV]") or n == "white_line_energy" for n in top), top
    # no training labels here, so no modal baseline (it used to print NaN)
    assert "modal_baseline_accuracy" not in metrics["coordination_number"]
    assert main(["report", "--models", str(models), "--library", str(lib), "--out", str(tmp_path / "rep")]) == 0
    for name in ("performance.png", "coverage.png", "parity_Cu.png", "importance_Cu.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 5000
    assert "| Cu | polynomial |" in (tmp_path / "rep" / "summary.md").read_text()
    # --source is honoured (it was ignored), and a source the data lack is named
    sources = sorted(set(cu_subset.source.tolist()))
    assert main(["report", "--models", str(models), "--library", str(lib), "--source", sources[0],
                 "--out", str(tmp_path / "rep1")]) == 0
    assert (tmp_path / "rep1" / "parity_Cu.png").stat().st_size > 5000
    assert main(["report", "--models", str(models), "--library", str(lib), "--source", "no-such-source",
                 "--out", str(tmp_path / "rep2")]) == 2
    assert main(["train", "--library", str(lib), "--elements", "Ti", "--out", str(models)]) == 2
    assert main(["train", "--library", str(lib), "--elements", "Cu", "--seeds", "1", "--out", str(models)]) == 2
    assert "2 views need at least as many seeds" in capsys.readouterr().err
    assert main(["train", "--library", str(lib), "--elements", "Cu", "--edge-view", "60", "--out", str(models)]) == 2
    assert "--edge-view: the edge view's end 60.0 eV must lie in the window" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a share is in [0, 1]
        main(["train", "--library", str(lib), "--elements", "Cu", "--neighbour-vote", "1.5", "--out", str(models)])
    assert "expected a share in [0, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a blur is 0 to 10 eV
        main(["train", "--library", str(lib), "--elements", "Cu", "--vote-blur", "-1", "--out", str(models)])
    assert "--vote-blur: expected a blur of 0 to 10 eV, got -1" in capsys.readouterr().err
    assert main(["train", "--library", str(lib), "--elements", "Cu", "--seeds", "2", "--trees", "5",
                 "--calibration-folds", "0", "--neighbour-vote", "0", "--out", str(tmp_path / "alone"), "--quiet"]) == 0
    assert ElementModel.load(tmp_path / "alone" / "Cu-pointwise-post_edge.npz").vote is None
    # a blurred vote is kept in the bundle and said in info
    assert main(["train", "--library", str(lib), "--elements", "Cu", "--seeds", "2", "--trees", "5",
                 "--calibration-folds", "0", "--vote-blur", "2", "--out", str(tmp_path / "blur"), "--quiet"]) == 0
    assert ElementModel.load(tmp_path / "blur" / "Cu-pointwise-post_edge.npz").vote.blur == 2.0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "blur" / "Cu-pointwise-post_edge.npz")]) == 0
    assert "spectra blurred 2 eV FWHM" in capsys.readouterr().out


def test_permutation_importance_finds_the_informative_feature():
    from xanes_agent.models.training import permutation_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.where(X[:, 2] > 0, 6, 4)
    clf = SeedEnsembleClassifier(n_seeds=2, n_estimators=10).fit(X, y)
    from xanes_agent.models.model import PropertyModel

    pm = PropertyModel("coordination_number", "coordination_number", "classifier",
                       PackedForests.from_sklearn(clf.estimators_), clf.feature_importances_,
                       clf.feature_importances_std_)
    Xt = rng.normal(size=(200, 6))
    mean, std = permutation_importance(pm, Xt, np.where(Xt[:, 2] > 0, 6, 4), n_repeats=3)
    assert np.argmax(mean) == 2 and mean[2] > 0.3 and abs(mean[0]) < 0.05


def test_measurement_copies_add_the_noise_and_shift_asked_for():
    from xanes_agent.models.features import DEFAULT_GRID
    from xanes_agent.models.training import live_config, measurement_copies

    g = DEFAULT_GRID.energies
    X = np.tile(1.0 / (1.0 + np.exp(-(g - 2.0))), (400, 1))  # a smooth step, E0 near 2 eV
    rng = np.random.default_rng(0)
    noisy = measurement_copies(X, DEFAULT_GRID, (1e-3, 1e-2), 0.0, rng)
    sigma = np.std(noisy - X, axis=1)
    assert noisy.shape == X.shape and 0.8e-3 < sigma.min() and sigma.max() < 1.2e-2
    shifted = measurement_copies(X, DEFAULT_GRID, (0.0, 0.0), 0.5, rng)
    # a shift of s eV moves the half-height crossing by -s: all within 0.5 eV, not all the same
    cross = np.array([np.interp(0.5, row[np.isfinite(row)], g[np.isfinite(row)]) for row in shifted])
    assert np.abs(cross - 2.0).max() <= 0.51 and np.ptp(cross) > 0.5  # 0.01: linear interpolation on the grid
    cfg = live_config(n_estimators=3)
    assert cfg.noise[1] > 0 and cfg.e0_jitter > 0 and cfg.min_samples_leaf == 5 and cfg.n_estimators == 3


# -- hostile bundles (issue 15): every refusal is a BundleError, before any walk ---------------------

def _resigned(path, out, mutate):
    """Apply ``mutate`` to the arrays and manifest, then sign the result as a writer would: the
    hashes are valid, so only the structural checks stand between the file and the compiled walk."""
    from xanes_agent.models.model import _bundle_digest, _digest

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = json.loads(str(arrays.pop("manifest")))
    mutate(arrays, manifest)
    manifest["sha256"] = {k: _digest(v) for k, v in arrays.items()}
    manifest["digest"] = _bundle_digest(manifest)
    np.savez_compressed(out, manifest=np.array(json.dumps(manifest)), **arrays)
    return out


@pytest.fixture(scope="module")
def tiny_bundle(cu_subset, tmp_path_factory):
    cfg = TrainConfig(n_seeds=2, n_estimators=3, calibration_folds=0)
    return train_element(cu_subset, "Cu", cfg, progress=False).save(tmp_path_factory.mktemp("tiny") / "cu.npz")


def test_an_edited_manifest_field_is_refused(tiny_bundle, tmp_path):
    def flip(a):
        m = json.loads(str(a["manifest"]))
        m["featurization"] = "polynomial"
        a["manifest"] = np.array(json.dumps(m))

    with pytest.raises(BundleError, match="digest"):
        ElementModel.load(_rewrite(tiny_bundle, tmp_path / "flip.npz", flip))


@pytest.mark.parametrize("what, match", [
    ("child out of range", "out of range"), ("cycle", "cycle"), ("feature index", "feature index"),
    ("NaN value", "non-finite"), ("shallow depth", "deeper"), ("classes", "class"), ("manifest type", "malformed"),
    ("vote label", "neighbour vote labels outside"), ("vote width", "neighbour vote spectra"),
    ("vote share", "share 2.0"), ("vote k", "k 0"), ("vote record", "not a mapping"),
    ("vote inf", "infinite"), ("vote classes", "classes differ"),
    ("vote parents", "parents must be one integer per spectrum"), ("vote voters", "voters 'atoms'"),
    ("vote blur", "blur -2.0"), ("vote blur NaN", "blur nan"), ("vote blur text", "blur '2'"),
])
def test_signed_but_broken_trees_are_refused_before_any_walk(tiny_bundle, tmp_path, what, match):
    def mutate(a, m):
        p = "coordination_number__"
        inner = np.flatnonzero(a[p + "left"] != np.arange(len(a[p + "left"])))
        if what == "child out of range":
            a[p + "left"][inner[0]] = 10**6
        elif what == "cycle":
            a[p + "right"][inner[1]] = inner[0]
        elif what == "feature index":
            a[p + "feature"][inner[0]] = 9999
        elif what == "NaN value":
            a[p + "value"][0, 0] = np.nan
        elif what == "shallow depth":
            a[p + "shape"][0] = 1
        elif what == "classes":
            a[p + "classes"] = np.array([4.0, 5.0, 6.0, 7.0])
        elif what == "manifest type":
            m["properties"]["charge"] = ["not", "a", "dict"]
        elif what == "vote label":
            a["vote__labels"][0] = 7
        elif what == "vote width":
            a["vote__spectra"] = a["vote__spectra"][:, :-1]
        elif what == "vote share":
            m["neighbour_vote"]["share"] = 2.0
        elif what == "vote k":
            m["neighbour_vote"]["k"] = 0
        elif what == "vote record":
            m["neighbour_vote"] = [0.5, 5]
        elif what == "vote inf":
            a["vote__spectra"][0, 0] = np.inf
        elif what == "vote classes":
            m["neighbour_vote"]["classes"] = "456"
        elif what == "vote parents":
            a["vote__parents"] = a["vote__parents"][:-1]
        elif what == "vote voters":
            m["neighbour_vote"]["voters"] = "atoms"
        elif what == "vote blur":
            m["neighbour_vote"]["blur_fwhm"] = -2.0
        elif what == "vote blur NaN":
            m["neighbour_vote"]["blur_fwhm"] = float("nan")
        elif what == "vote blur text":
            m["neighbour_vote"]["blur_fwhm"] = "2"

    with pytest.raises(BundleError, match=match):
        ElementModel.load(_resigned(tiny_bundle, tmp_path / "bad.npz", mutate))


def test_an_oversized_archive_is_refused_before_decompressing(tiny_bundle, monkeypatch):
    import xanes_agent.models.model as model_module

    monkeypatch.setattr(model_module, "MAX_BUNDLE_BYTES", 1000)
    with pytest.raises(BundleError, match="refusing to decompress"):
        ElementModel.load(tiny_bundle)


def test_random_node_edits_never_crash_or_hang(tiny_bundle, tmp_path):
    """Property-based: any signed edit of the node tables loads and predicts, or is a BundleError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from xanes_agent.agent.predictor import LivePredictor

    names = ["left", "right", "feature", "roots", "tree_forest"]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["coordination_number__", "mean_nn_distance__"]), st.sampled_from(names),
           st.integers(0, 10**6), st.integers(-5, 10**5))
    def check(prefix, name, where, value):
        def mutate(a, m):
            arr = a[prefix + name]
            arr[where % len(arr)] = value

        out = _resigned(tiny_bundle, tmp_path / "edit.npz", mutate)
        try:
            model = ElementModel.load(out)
        except BundleError:
            return
        pred = LivePredictor(model)
        e = np.linspace(8950, 9060, 120)
        pred.update(e, 1 / (1 + np.exp(-(e - 8985) / 2)))

    check()


def test_cli_trains_on_one_code_and_calibrates_across_another(tmp_path, cu_subset, capsys):
    """``train --source feff10-project --calibrate-across omnixas-feff9``: FEFF10 spectra train,
    FEFF 9 spectra only calibrate the across-codes intervals; ``info`` says so."""
    from xanes_agent.cli import main
    from xanes_agent.data import SpectrumCollection, write_library
    from xanes_agent.models.model import ElementModel

    project = load_bundled_library().where(element="Cu", source="feff10-project")
    lib = tmp_path / "lib.npz"
    write_library(SpectrumCollection.concatenate([project, cu_subset]), lib)
    models = tmp_path / "models"
    assert main(["train", "--library", str(lib), "--source", "feff10-project", "--calibrate-across", "omnixas-feff9",
                 "--elements", "Cu", "--seeds", "2", "--trees", "5", "--out", str(models), "--quiet"]) == 0
    m = ElementModel.load(models / "Cu-pointwise-post_edge.npz")
    assert m.sources == ["feff10-project"] and m.n_spectra == len(project)
    assert m.calibration.method["across_codes"]["source"] == "omnixas-feff9"
    capsys.readouterr()
    assert main(["info", str(models / "Cu-pointwise-post_edge.npz")]) == 0
    out = capsys.readouterr().out
    assert "across codes: calibrated on" in out and "CN probability across codes: " in out
    assert main(["train", "--library", str(lib), "--calibrate-across", "no-such-code", "--elements", "Cu",
                 "--out", str(models)]) == 2
    assert "no-such-code" in capsys.readouterr().err


def test_feff_charge_transfer_gets_its_own_model_beside_the_oxidation_state_one(tmp_path, capsys):
    """Where the spectra carry FEFF's computed charge, a second charge model predicts it (in e),
    named for what it is; the ``charge`` model stays on the oxidation state even where nearly
    every spectrum carries the FEFF label; too few labels: no such model."""
    import copy

    from xanes_agent.data.library import PROJECT_SOURCE
    from xanes_agent.foundation.properties import FEFF_CHARGE, PROPERTIES
    from xanes_agent.models.training import MIN_LABELLED

    lib = load_bundled_library().where(element="V", source=PROJECT_SOURCE)
    q = lib.labels[FEFF_CHARGE]
    assert np.isfinite(q).sum() > MIN_LABELLED[FEFF_CHARGE]  # the reduced-v2 sites carry it
    cfg = TrainConfig(n_seeds=2, n_estimators=10, calibration_folds=2, calibration_seeds=1)
    m = train_element(lib, "V", cfg, progress=False)
    pm = m.properties[FEFF_CHARGE]
    assert pm.label == FEFF_CHARGE and pm.kind == "regressor"
    from xanes_agent.models.training import assign_splits

    # the labelled rows of the training split (every row but the library's test rows), bar a few
    # that lack a grid
    train = (assign_splits(lib, cfg.split_seed) == "train") & np.isfinite(q)
    assert 0.9 * train.sum() <= pm.n_train <= train.sum()
    assert m.properties["charge"].label == "oxidation_state"
    assert PROPERTIES[FEFF_CHARGE].unit_for(pm.label) == "e" and not PROPERTIES[FEFF_CHARGE].decides
    assert FEFF_CHARGE in m.calibration.quantiles  # intervals calibrated out of parent, like the others
    from xanes_agent.models.features import spectra_to_grid

    X, _ = spectra_to_grid(lib.energy[:3], lib.mu[:3])
    assert np.isfinite(m.predict_grid(X)[FEFF_CHARGE]["prediction"]).all()
    # it steers no measurement: the importance map and the proposals come from the deciding three
    from xanes_agent.agent.strategies import make_strategy

    e = np.linspace(m.grid.start, m.grid.stop, 200)
    deciding = [n for n in m.properties if n != FEFF_CHARGE]
    assert len(deciding) == 3
    np.testing.assert_allclose(m.importance_map(e), np.mean([m.importance_map(e, n) for n in deciding], axis=0))
    preds = {n: {"std": 0.1} for n in m.properties}
    preds["coordination_number"] = {"probability": 0.5}
    covered = np.zeros(m.grid.n, bool)
    before = make_strategy("importance_uncertainty").propose(0.0, m.grid.energies, covered, m, preds, n=5)
    m.properties[FEFF_CHARGE].importances = np.roll(m.properties[FEFF_CHARGE].importances, 40)
    after = make_strategy("importance_uncertainty").propose(0.0, m.grid.energies, covered, m, preds, n=5)
    assert [(p.start, p.score) for p in before] == [(p.start, p.score) for p in after]
    from xanes_agent.cli import main

    capsys.readouterr()
    assert main(["info", str(m.save(tmp_path / "V.npz"))]) == 0
    out = capsys.readouterr().out
    assert "feff_charge_transfer (feff_charge_transfer, regressor" in out and "informs only" in out
    assert out.count("informs only") == 1  # the deciding three are not marked

    full = copy.deepcopy(lib)
    full.labels[FEFF_CHARGE] = np.where(np.isfinite(q), q, 0.1)  # every spectrum labelled
    m = train_element(full, "V", TrainConfig(n_seeds=1, n_estimators=5, calibration_folds=0, views=()), progress=False)
    assert m.properties["charge"].label == "oxidation_state"  # not taken over by the FEFF label
    assert m.properties[FEFF_CHARGE].label == FEFF_CHARGE

    few = copy.deepcopy(lib)
    keep = np.flatnonzero(np.isfinite(q))[: MIN_LABELLED[FEFF_CHARGE] // 2]
    few.labels[FEFF_CHARGE] = np.where(np.isin(np.arange(len(q)), keep), q, np.nan)
    m = train_element(few, "V", TrainConfig(n_seeds=1, n_estimators=5, calibration_folds=0, views=()), progress=False)
    assert FEFF_CHARGE not in m.properties and "charge" in m.properties


def test_the_cn_answer_blends_the_forests_with_the_nearest_training_spectra(cu_model, cu_subset, tiny_bundle, tmp_path):
    """The stated CN probability is (1 - share) x forests + share x the vote of the 5 nearest
    training spectra (each 1 / distance), before calibration; the bundle keeps the voters, and a
    version-3 bundle (no vote) is read as the forests alone."""
    from xanes_agent.models.features import spectra_to_grid
    from xanes_agent.models.neighbours import VOTE_BLUR, NeighbourVote

    vote = cu_model.vote
    assert vote is not None and vote.share == 0.25 and vote.k == 5
    assert vote.parents is not None and vote.meta()["voters"] == "parent"
    assert list(vote.classes) == list(cu_model.properties["coordination_number"].packed.classes)
    X, _ = spectra_to_grid(cu_subset.energy[:30], cu_subset.mu[:30])
    got = cu_model.predict_grid(X)["coordination_number"]
    np.testing.assert_allclose(got["raw_proba"], 0.75 * got["forest_proba"] + 0.25 * vote.proba(X))
    assert np.array_equal(got["prediction"], vote.classes[np.argmax(got["raw_proba"], axis=1)])
    # a training spectrum's nearest voter is itself
    own = vote.proba(vote.spectra[:10].astype(float))
    assert np.all(own[np.arange(10), np.searchsorted(vote.classes, vote.labels[:10])] > 0.9)

    # a partial spectrum is compared where it is measured, nowhere else
    R = np.random.default_rng(3).normal(size=(50, 12))
    v = NeighbourVote(R.astype(np.float32), np.repeat([4, 5, 6], [20, 20, 10]).astype(np.int8), np.array([4., 5., 6.]))
    x = R[7] + 0.05
    x[6:] = np.nan
    part = NeighbourVote(R[:, :6].astype(np.float32), v.labels, v.classes)
    np.testing.assert_allclose(v.proba(x), part.proba(x[:6]))
    np.testing.assert_allclose(v.proba(np.full(12, np.nan)), [[0.4, 0.4, 0.2]])  # nothing measured: class shares

    def version3(a, m):  # as a version-3 writer made it: no vote
        a.pop("vote__spectra"), a.pop("vote__labels")
        m["neighbour_vote"] = None
        m["format_version"] = 3

    old = ElementModel.load(_resigned(tiny_bundle, tmp_path / "v3.npz", version3))
    assert old.vote is None
    p = old.predict_grid(X)["coordination_number"]
    assert "forest_proba" not in p and np.allclose(p["proba"].sum(axis=1), 1.0)

    def version4(a, m):  # as a version-4 writer made it: every spectrum votes
        a.pop("vote__parents")
        m["neighbour_vote"].pop("voters")
        m["format_version"] = 4

    v4 = ElementModel.load(_resigned(tiny_bundle, tmp_path / "v4.npz", version4))
    assert v4.vote is not None and v4.vote.parents is None and v4.vote.meta()["voters"] == "spectrum"
    assert v4.format_version == 4 and cu_model.format_version == BUNDLE_VERSION  # the demo retrains an older one

    def version5(a, m):  # as a version-5 writer made it: spectra compared as they are
        m["neighbour_vote"].pop("blur_fwhm")
        m["format_version"] = 5

    v5 = ElementModel.load(_resigned(tiny_bundle, tmp_path / "v5.npz", version5))
    assert v5.vote is not None and v5.vote.blur == 0.0 and v5.vote.parents is not None
    assert cu_model.vote.blur == VOTE_BLUR and cu_model.vote.meta()["blur_fwhm"] == VOTE_BLUR


def test_the_vote_compares_blurred_spectra_measured_or_partial():
    """A vote with a blur answers as an unblurred vote on blurred spectra (both sides); for a
    partial spectrum both are blurred from the points it has (the stored ones blurred whole differ
    from it at every edge of what it has); the stored spectra stay as given. Blurred, what counts is
    the broad shape, not the sharpness: two sharp lines 1.2 eV off the query's are farther than the
    same lines broadened in place, and nearer once both sides are blurred by 4 eV."""
    from xanes_agent.models.features import DEFAULT_GRID, grid_blur
    from xanes_agent.models.neighbours import NeighbourVote

    rng = np.random.default_rng(5)
    g = DEFAULT_GRID.energies
    R = rng.normal(size=(40, DEFAULT_GRID.n))
    labels = np.repeat([4, 5, 6], [10, 15, 15])
    classes = np.array([4.0, 5.0, 6.0])
    blurred = NeighbourVote.fit(R, labels, classes, parents=np.arange(40) // 2, blur=2.0, grid=DEFAULT_GRID)
    plain = NeighbourVote.fit(grid_blur(R, DEFAULT_GRID, 2.0), labels, classes, parents=np.arange(40) // 2)
    x = rng.normal(size=(4, DEFAULT_GRID.n))
    x[1, 70:] = np.nan
    x[3, 20:40] = np.nan
    got = blurred.proba(x)
    whole = [0, 2]
    np.testing.assert_allclose(got[whole], plain.proba(grid_blur(x[whole], DEFAULT_GRID, 2.0)))
    for i in (1, 3):  # the stored spectra seen only where this one is measured, then blurred
        seen = np.where(np.isfinite(x[i]), R, np.nan)
        same = NeighbourVote.fit(grid_blur(seen, DEFAULT_GRID, 2.0), labels, classes, parents=np.arange(40) // 2)
        np.testing.assert_allclose(got[i], same.proba(grid_blur(x[i], DEFAULT_GRID, 2.0))[0])
    assert not np.allclose(got[[1, 3]], plain.proba(grid_blur(x[[1, 3]], DEFAULT_GRID, 2.0)))
    assert np.isfinite(got).all()
    assert np.array_equal(blurred.spectra, R.astype(np.float32))  # stored as given

    def lines(at, width, height=1.0):  # Gaussian lines at ``at`` and ``at`` + 10 eV
        return sum(height * np.exp(-0.5 * ((g - e) / width) ** 2) for e in (at, at + 10.0))

    query = lines(10.0, 0.4)
    ref = np.vstack([lines(11.2, 0.4), lines(10.0, 2.0, 0.5)])  # sharp and shifted (CN 6); broad in place (CN 5)
    lab, two = np.array([6, 5]), np.array([5.0, 6.0])
    assert NeighbourVote.fit(ref, lab, two, k=1).proba(query)[0].argmax() == 0  # CN 5 nearest as they are
    assert NeighbourVote.fit(ref, lab, two, k=1, blur=4.0, grid=DEFAULT_GRID).proba(query)[0].argmax() == 1
    with pytest.raises(ValueError, match="grid"):
        NeighbourVote.fit(ref, lab, two, blur=2.0)


def test_each_parent_structure_votes_once_however_many_copies_it_has():
    """Ten strained copies of one six-coordinate parent nearest to a spectrum are one voice against
    three five-coordinate parents a little farther; counted per spectrum they outvote them."""
    from xanes_agent.models.neighbours import NeighbourVote

    rng = np.random.default_rng(0)
    x = np.zeros(8)
    copies = 0.1 / np.sqrt(8) + rng.normal(0, 1e-4, (10, 8))  # 0.1 from x (grid-scaled distance)
    others = np.vstack([0.2 / np.sqrt(8) * np.ones(8)] * 3) + rng.normal(0, 1e-4, (3, 8))  # 0.2 away
    far = np.full((1, 8), 5.0)
    R = np.vstack([copies, others, far]).astype(np.float32)
    labels = np.array([6] * 10 + [5] * 3 + [4], np.int8)
    parents = ["family:a"] * 10 + ["mp-1", "mp-2", "mp-3", "mp-4"]
    classes = np.array([4.0, 5.0, 6.0])
    by_spectrum = NeighbourVote.fit(R, labels, classes).proba(x)
    by_parent = NeighbourVote.fit(R, labels, classes, parents=parents).proba(x)
    assert by_spectrum[0].argmax() == 2 and by_spectrum[0, 2] == pytest.approx(1.0)
    # one voice at 0.1 (weight 10) against three at 0.2 (5 each), and the CN 4 parent far away
    w_far = 1 / np.sqrt(8 * 25.0)
    np.testing.assert_allclose(by_parent[0], np.array([w_far, 15, 10]) / (25 + w_far), rtol=5e-3)
    # one parent with spectra of two CNs is two voters
    mixed = NeighbourVote.fit(R[:2], np.array([6, 4]), classes, k=5, parents=["mp-9", "mp-9"])
    assert mixed._voters[0].shape == (2,) and len(mixed._voters[1]) == 2


def test_a_committee_of_views_packs_exactly_and_each_forest_reads_only_its_columns():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 12))
    y = np.where(X[:, 9] > 0.3, 6, np.where(X[:, 1] > 0, 5, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    edge = [8, 9, 10, 11]
    clf = SeedEnsembleClassifier(n_seeds=4, n_estimators=15, feature_subsets=[range(12), edge]).fit(X, y)
    reg = SeedEnsembleRegressor(n_seeds=4, n_estimators=15, feature_subsets=[range(12), edge]).fit(
        X, np.nan_to_num(X[:, 1] + X[:, 10]))
    Xt = rng.normal(size=(50, 12))
    Xt[rng.random(Xt.shape) < 0.3] = np.nan
    for est, ref in ((clf, clf.predict_proba_per_seed(Xt)), (reg, reg.predict_per_seed(Xt)[..., None])):
        packed = PackedForests.from_sklearn(est.estimators_, est.columns_)
        np.testing.assert_allclose(packed.per_forest(Xt), ref, atol=1e-12)
        split = np.isfinite(packed.threshold)  # leaves carry +inf
        node_forest = np.repeat(packed.tree_forest, np.diff(np.append(packed.roots, len(packed.feature))))
        for k in (1, 3):  # the edge view's seeds: every split reads one of its columns, in the full vector
            assert set(packed.feature[split & (node_forest == k)]) <= set(edge)
        assert not set(packed.feature[split & (node_forest == 0)]) <= set(edge)
        # scikit-learn's own importances per forest know only its columns; the ensemble's are on all 12
        assert [len(e.feature_importances_) for e in est.estimators_] == [12, 4, 12, 4]
        assert est.feature_importances_.shape == (12,)
    # the whole-window seeds alone see column 1; the edge seeds cannot
    assert clf.feature_importances_[1] > 0 and clf.estimators_[1].n_features_in_ == 4
    assert clone(clf).feature_subsets == [range(12), edge]
    with pytest.raises(ValueError, match="at least as many seeds"):
        SeedEnsembleClassifier(n_seeds=1, feature_subsets=[range(12), edge]).fit(X, y)
    with pytest.raises(ValueError, match="distinct column indices below 12"):
        SeedEnsembleRegressor(n_seeds=2, feature_subsets=[range(12), [3, 12]]).fit(X, np.nan_to_num(X[:, 1]))
    with pytest.raises(ValueError, match="12 features"):
        clf.predict_proba(Xt[:, :10])


def test_views_are_energy_windows_of_the_features():
    from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, view_columns

    g = DEFAULT_GRID.energies
    point = make_featurizer("pointwise")
    whole, edge = view_columns(point, [(-15, 45), (-15, 8)])
    assert len(whole) == 120
    np.testing.assert_array_equal(edge, np.flatnonzero(g <= 8 + DEFAULT_GRID.step / 2))
    poly = make_featurizer("polynomial")
    (cols,) = view_columns(poly, [(-15, 8)])
    ranges = poly.energy_ranges_[cols]
    assert ranges[:, 1].max() <= 8 + DEFAULT_GRID.step and "white_line_energy" not in poly.feature_names_[cols]
    assert len(cols) == 4 * (1 + 1 + 3 + 7)  # the chunks of 4/5/10/20 that end below E0 + 8 eV
    with pytest.raises(ValueError, match="no feature lies within"):
        view_columns(point, [(50, 60)])
    with pytest.raises(ValueError, match="start < stop"):
        view_columns(point, [(8, -15)])
    with pytest.raises(ValueError, match="views need at least as many seeds"):
        TrainConfig(n_seeds=1, views=((-15, 45), (-15, 8)))
    assert TrainConfig(n_seeds=1, views=()).views == ()


def test_a_model_of_views_trains_saves_and_predicts_partial_spectra(cu_subset, tmp_path):
    from xanes_agent.models.features import spectra_to_grid

    cfg = TrainConfig(n_seeds=2, n_estimators=10, calibration_seeds=2, featurization="pointwise",
                      views=((-15, 45), (-15, 8)))
    model = train_element(cu_subset, "Cu", cfg, progress=False)
    assert [list(v) for v in model.config["views"]] == [[-15.0, 45.0], [-15.0, 8.0]]
    imp = model.properties["coordination_number"].importances
    assert imp.shape == (120,) and imp[47:].sum() > 0  # the whole-window seeds read above the edge too
    back = ElementModel.load(model.save(tmp_path / "views.npz"), expect_featurization="pointwise")
    X, _ = spectra_to_grid(cu_subset.energy[:30], cu_subset.mu[:30])
    X[10:, 60:] = np.nan  # partly measured
    a, b = model.predict_grid(X), back.predict_grid(X)
    np.testing.assert_allclose(a["coordination_number"]["proba"], b["coordination_number"]["proba"])
    np.testing.assert_allclose(a["mean_nn_distance"]["interval68"], b["mean_nn_distance"]["interval68"])
    assert np.isfinite(a["mean_nn_distance"]["prediction"]).all()
    # the domain score keeps the polynomial features whatever the models train on, in the bundle too
    for m in (model, back):
        assert m.calibration.domain.featurization == "polynomial"
        assert m.calibration.domain.reference.shape[1] == 157
    from xanes_agent.models.features import make_featurizer

    np.testing.assert_allclose(a["mean_nn_distance"]["domain_score"],
                               model.calibration.domain.score(make_featurizer("polynomial").transform(X)))

    def bogus(arrays, manifest):
        manifest["calibration"]["domain_featurization"] = "wavelets"

    with pytest.raises(BundleError, match="domain featurization 'wavelets' is not one of"):
        ElementModel.load(_resigned(tmp_path / "views.npz", tmp_path / "bogus.npz", bogus))

    def as_version8(arrays, manifest):  # a format-8 bundle scores the model's own features
        manifest["calibration"].pop("domain_featurization")
        manifest["format_version"] = 8

    with pytest.raises(BundleError, match="domain model arrays do not match the features"):
        ElementModel.load(_resigned(tmp_path / "views.npz", tmp_path / "v8.npz", as_version8))


def test_the_regressors_train_on_experiment_like_copies_and_the_classifier_does_not(cu_subset):
    """``regressor_copies`` joins experiment-like copies of each training spectrum to the distance and
    charge models' rows (their errors on new structures fall, docs/models.md session 36); the CN
    classifier, which loses with them out of family, trains exactly as without them."""
    base = dict(n_seeds=2, n_estimators=5, calibration_folds=0, properties=("coordination_number", "mean_nn_distance"))
    plain = train_element(cu_subset, "Cu", TrainConfig(regressor_copies=0, **base), progress=False)
    copied = train_element(cu_subset, "Cu", TrainConfig(regressor_copies=2, **base), progress=False)
    cn_a, cn_b = plain.properties["coordination_number"].packed, copied.properties["coordination_number"].packed
    for name in PackedForests.ARRAYS:
        np.testing.assert_array_equal(getattr(cn_a, name), getattr(cn_b, name))
    # three times the rows (each spectrum and two copies), grown to pure leaves: over twice the nodes
    d_a, d_b = plain.properties["mean_nn_distance"].packed, copied.properties["mean_nn_distance"].packed
    assert d_b.threshold.size > 2 * d_a.threshold.size
    assert copied.config["regressor_copies"] == 2 and plain.config["regressor_copies"] == 0
