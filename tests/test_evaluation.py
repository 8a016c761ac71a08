"""Out-of-family evaluation helpers and experiment-like training copies."""

import numpy as np
import pytest

from xanes_agent.models.evaluation import (
    EvalConfig,
    group_folds,
    group_mean_se,
    group_weights,
    out_of_group_predictions,
    summarize,
)
from xanes_agent.models.features import DEFAULT_GRID
from xanes_agent.models.realism import Realism, broaden, experiment_like_grid


def test_group_folds_keep_groups_whole_and_stable():
    groups = np.array([f"mp-{i % 37}" for i in range(500)])
    folds = group_folds(groups, 5)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert len(set(folds.tolist())) == 5
    grown = np.concatenate([groups, np.array(["mp-new"] * 10)])
    np.testing.assert_array_equal(group_folds(grown, 5)[:500], folds)  # a growing library keeps its folds
    few = np.array(["a", "b", "a", "c"])
    np.testing.assert_array_equal(group_folds(few, 5), [0, 1, 0, 2])  # leave-one-group-out


def test_out_of_group_predictions_never_see_their_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 30).astype(str)
    # each group has its own offset in the label that the features cannot show: out of group it is
    # unpredictable, so the error must be large; in group it would be small
    F = rng.normal(size=(180, 4))
    offset = rng.normal(0, 1.0, 6)[groups.astype(int)]
    y = {"mean_nn_distance": F[:, 0] + offset, "coordination_number": np.where(F[:, 1] > 0, 6.0, 4.0),
         "oxidation_state": np.full(180, np.nan)}
    pred = out_of_group_predictions(F, y, group_folds(groups, 6))
    s = summarize(y, pred).metrics
    assert s["distance_mae"] > 0.4 and s["cn_balanced_accuracy"] > 0.8 and s["cn_modal_baseline"] <= 0.6


def test_training_only_rows_and_parent_weights():
    """Rows with fold -1 train every fold and are never predicted; with parent weighting a group of
    many near-copies weighs what one structure does (the prediction for a lone test row moves
    toward the many small groups)."""
    groups = np.array(["family:big"] * 40 + [f"mp-{i}" for i in range(20)])
    w = group_weights(groups)
    np.testing.assert_allclose([w[groups == g].sum() for g in np.unique(groups)], 1.0)

    rng = np.random.default_rng(0)
    F = np.vstack([rng.normal(0, 0.05, (40, 2)), rng.normal(0, 0.05, (20, 2))])
    y = {"mean_nn_distance": np.r_[np.full(40, 2.0), np.full(20, 1.9)],
         "coordination_number": np.r_[np.full(40, 6.0), np.full(20, 4.0)]}
    F = np.vstack([F, [[0.0, 0.0]]])
    y = {k: np.r_[v, v[0]] for k, v in y.items()}
    groups = np.r_[groups, ["family:test"]]
    folds = np.r_[np.full(60, -1), [0]]
    cfg = EvalConfig(n_estimators=50)
    plain = out_of_group_predictions(F, y, folds, cfg)
    assert np.isnan(plain["mean_nn_distance"][:60]).all() and np.isfinite(plain["mean_nn_distance"][60])
    weighted = out_of_group_predictions(F, y, folds, EvalConfig(n_estimators=50, weighting="parent"),
                                        groups=groups)
    assert weighted["mean_nn_distance"][60] < plain["mean_nn_distance"][60] - 0.02
    with pytest.raises(ValueError, match="groups_train"):  # parent weighting without groups is refused
        out_of_group_predictions(F, y, folds, EvalConfig(weighting="parent"))
    # the vote counts parents, so it needs them too; a vote by spectrum does not
    with pytest.raises(ValueError, match="vote by parent needs"):
        out_of_group_predictions(F, y, folds, EvalConfig(n_estimators=10, neighbour_vote=0.5), spectra=F)
    voted = out_of_group_predictions(F, y, folds, EvalConfig(n_estimators=10, neighbour_vote=1.0, voters="spectrum"),
                                     spectra=F)
    assert np.isclose(voted["coordination_number_proba"][60].sum(), 1.0)
    # a blurred vote needs the grid its spectra are on
    with pytest.raises(ValueError, match="vote_grid"):
        out_of_group_predictions(F, y, folds, EvalConfig(n_estimators=10, neighbour_vote=0.5, voters="spectrum",
                                                         vote_blur=2.0), spectra=F)


def test_broadening_keeps_area_and_widens():
    e = np.linspace(0, 100, 2001)
    peak = np.exp(-0.5 * ((e - 50) / 0.2) ** 2)
    e2, b = broaden(e, peak, fwhm=3.0)
    area = lambda x, y: float(np.sum(y) * (x[1] - x[0]))  # noqa: E731 - uniform grids
    assert abs(area(e2, b) / area(e, peak) - 1) < 0.01
    half = e2[b > b.max() / 2]
    expected = np.sqrt(3.0 ** 2 + (2.355 * 0.2) ** 2)
    assert abs((half[-1] - half[0]) - expected) < 0.15


def test_experiment_like_copies_of_computed_spectra(bundled_library):
    lib = bundled_library.where(element="Fe", source="feff10-project")[:5]
    X, src = experiment_like_grid(lib.energy, lib.mu, np.arange(5), Realism(copies=3), rng=np.random.default_rng(0))
    assert X.shape == (15, DEFAULT_GRID.n) and sorted(src.tolist()) == sorted(list(range(5)) * 3)
    assert np.isfinite(X).mean() > 0.9


def test_stretched_copies_move_features_about_e0():
    """A peak 30 eV above the edge lands within +-stretch of where it is unstretched in every copy,
    spread over that range; without a stretch the otherwise quiet copies are identical."""
    e = np.linspace(-30.0, 80.0, 1101)
    mu = 1.0 / (1.0 + np.exp(-e / 0.8)) + 0.6 * np.exp(-0.5 * ((e - 30.0) / 1.5) ** 2)
    quiet = dict(fwhm=(0.5, 0.5), e0_shift=0.0, scale_std=0.0, noise=(0.0, 0.0), copies=40)
    grid = DEFAULT_GRID
    X, _ = experiment_like_grid([e], [mu], np.array([0]), Realism(stretch=0.1, **quiet), grid,
                                rng=np.random.default_rng(1))
    peaks = grid.energies[np.nanargmax(np.where(grid.energies > 15, X, -np.inf), axis=1)]
    plain, _ = experiment_like_grid([e], [mu], np.array([0]), Realism(**quiet), grid, rng=np.random.default_rng(1))
    plain_peak = grid.energies[np.nanargmax(np.where(grid.energies > 15, plain[0], -np.inf))]
    assert np.all(np.abs(peaks - plain_peak) <= 0.1 * plain_peak + 0.6)  # within the stretch (+ one grid step)
    assert peaks.max() - peaks.min() > 0.1 * plain_peak  # and spread over it
    assert np.ptp(plain, axis=0).max() < 1e-12  # no stretch: identical copies here (nothing else drawn)


def test_excluded_rows_stay_out_of_their_fold_only():
    """``excluded[f]`` keeps rows out of fold f's training (a host of the left-out family's
    structure type), while other folds still train on them."""
    rng = np.random.default_rng(1)
    near = rng.normal(0, 0.05, (30, 2))  # the only training rows like fold 0's: label 2.3
    far = rng.normal(5, 0.05, (30, 2))  # label 1.9
    F = np.vstack([near, far, rng.normal(0, 0.05, (4, 2)), rng.normal(5, 0.05, (4, 2))])
    d = np.r_[np.full(30, 2.3), np.full(30, 1.9), np.full(4, 2.3), np.full(4, 1.9)]
    y = {"mean_nn_distance": d}
    folds = np.r_[np.full(60, -1), np.zeros(4, int), np.ones(4, int)]
    like = np.r_[np.ones(30, bool), np.zeros(38, bool)]
    cfg = EvalConfig(n_estimators=30)
    kept_out = out_of_group_predictions(F, y, folds, cfg, excluded={0: like})
    elsewhere = out_of_group_predictions(F, y, folds, cfg, excluded={1: like})
    np.testing.assert_allclose(kept_out["mean_nn_distance"][60:64], 1.9, atol=0.02)  # fold 0 never saw them
    np.testing.assert_allclose(elsewhere["mean_nn_distance"][60:64], 2.3, atol=0.02)


def test_group_mean_se_weighs_each_group_once_and_errs_by_the_number_of_groups():
    """The per-parent mean equals the parent-weighted average; its standard error is the spread of
    the groups' own means over sqrt(groups): many rows of one parent do not shrink it."""
    rng = np.random.default_rng(3)
    groups = np.repeat([f"p{i}" for i in range(10)], rng.integers(1, 30, 10))
    hit = rng.random(len(groups)) < 0.7
    mean, se = group_mean_se(hit, groups)
    np.testing.assert_allclose(mean, np.average(hit, weights=group_weights(groups)))
    means = np.array([hit[groups == g].mean() for g in np.unique(groups)])
    np.testing.assert_allclose(se, means.std(ddof=1) / np.sqrt(10))
    # every row copied 50 times: the same groups, the same error (rows are not independent draws)
    assert group_mean_se(np.repeat(hit, 50), np.repeat(groups, 50)) == pytest.approx((mean, se))
    # ten times the groups, each as spread: about a third of the error
    many = np.concatenate([np.char.add(groups, f"-{k}") for k in range(10)])
    _, se_many = group_mean_se(np.tile(hit, 10), many)
    assert se_many < se / 2
    assert np.isnan(group_mean_se(np.ones(4), np.array(["a"] * 4))[1])
