"""The one adaptive policy: pure, so every rule is checked here without a RunEngine; then the plan
driving it on the simulator (abort closes the agent's run too)."""

import numpy as np
import pytest

from xanes_agent.agent.policy import (
    DEFAULT_SURVEY,
    NORM_OFFSET,
    AdaptivePolicy,
    Measure,
    Stop,
    coarse_edge,
    new_energies,
)
from xanes_agent.agent.stopping import DEFAULT_STABILITY
from xanes_agent.foundation.energies import lattice_energies
from xanes_agent.foundation.normalization import find_e0

EDGE = 8979.0


def _edge_spectrum(e, e0=8990.0):
    return 1.0 / (1.0 + np.exp(-(np.asarray(e) - e0) / 1.5)) + 0.002 * (np.asarray(e) - e0).clip(0)


def _opening(spectrum, edge=EDGE):
    """Drive a policy's opening passes on a noise-free ``spectrum(e)``: the passes and every
    energy measured, in order."""
    pol = AdaptivePolicy(edge)
    es, passes = np.zeros(0), []
    while pol.in_opening:
        (m,) = pol.next(es, spectrum(es))
        passes.append(m)
        es = np.concatenate([es, m.energies])
    return passes, es


def _report(cn=6, p=0.95, d=2.0, d_std=0.005, q=2.0, q_std=0.02, coverage=1.0, in_domain=True, located=True):
    preds = {"coordination_number": {"prediction": cn, "probability": p, "in_domain": in_domain},
             "mean_nn_distance": {"prediction": d, "std": d_std}, "charge": {"prediction": q, "std": q_std}}
    return {"predictions": preds, "edge_located": located, "coverage": coverage}


def _opened():
    pol = AdaptivePolicy(EDGE)
    es, mus = [], []
    for kind in ("survey", "edge", "normalization"):
        (m,) = pol.next(es, mus)
        assert isinstance(m, Measure) and m.kind == kind
        es += list(m.energies)
        mus += list(_edge_spectrum(m.energies))
    return pol, np.array(es), np.array(mus)


def test_opening_passes_are_placed_from_what_was_read():
    pol = AdaptivePolicy(EDGE)
    (survey,) = pol.next([], [])
    lo, hi, step = DEFAULT_SURVEY
    assert survey.energies[0] == EDGE + lo and survey.energies[-1] == EDGE + hi
    assert np.allclose(np.diff(survey.energies), step)
    mu = _edge_spectrum(survey.energies)
    (edge,) = pol.next(survey.energies, mu)
    assert edge.info["centre"] == pytest.approx(coarse_edge(survey.energies, mu))
    assert abs(edge.info["centre"] - 8990.0) <= step / 2 and np.allclose(np.diff(edge.energies), 0.5)
    es = np.concatenate([survey.energies, edge.energies])
    ms = _edge_spectrum(es)
    (norm,) = pol.next(es, ms)
    order = np.argsort(es)
    assert np.median(norm.energies) == pytest.approx(find_e0(es[order], ms[order]) + NORM_OFFSET)
    with pytest.raises(ValueError, match="suggest"):
        pol.next(es, ms, _report(p=0.5))


def test_stop_rules_in_the_order_the_plan_checks_them():
    pol, es, mus = _opened()
    assert pol.next(es, mus, _report()).reason.startswith("confident")
    assert pol.next(es, mus, _report(p=0.2)).reason.startswith("confident")  # a stopped policy stays stopped
    pol, es, mus = _opened()
    out = pol.next(es, mus, _report(in_domain=False), suggest=lambda n: [])
    assert out == Stop("nothing left to propose (model window covered)")  # never 'confident' out of domain
    pol, es, mus = _opened()
    pol.max_points = len(es)
    assert "point budget" in pol.next(es, mus, _report(p=0.5), suggest=lambda n: []).reason
    pol, es, mus = _opened()
    pol.max_time = 1.0
    assert "time budget" in pol.next(es, mus, _report(p=0.5), suggest=lambda n: [], elapsed=2.0).reason
    pol, es, mus = _opened()
    assert "edge not located" in pol.next(es, mus, _report(located=False), suggest=lambda n: []).reason


def test_stable_answer_stops_after_agreeing_updates_with_a_decided_cn():
    pol, es, mus = _opened()
    far = {"start": 9100.0, "stop": 9110.0, "step": 1.0, "uid": "u", "score": 1.0}
    unsure = _report(p=0.7, d_std=0.05)  # stable, but not confident
    updates = DEFAULT_STABILITY["updates"]
    for i in range(updates - 1):  # agreeing updates, one short of a stable answer
        action = pol.next(np.concatenate([es, 9300 + np.arange(3 * (i + 1))]), mus, unsure,
                          suggest=lambda n, i=i: [{**far, "start": far["start"] + 20 * i,
                                                   "stop": far["stop"] + 20 * i}])
        assert isinstance(action, list)
    out = pol.next(np.concatenate([es, 9300 + np.arange(3 * updates)]), mus, unsure, suggest=lambda n: [far])
    assert out.reason.startswith(f"stable: the last {updates} updates agree (CN 6, P=0.70")
    pol, es, mus = _opened()  # the same answer at P = 0.5 is not a decision: it stops, said so
    undecided = DEFAULT_STABILITY["undecided_updates"]
    assert undecided >= 2
    for i in range(undecided):
        out = pol.next(np.concatenate([es, 9100 + np.arange(5 * (i + 1))]), mus, _report(p=0.5, d_std=0.05),
                       suggest=lambda n, i=i: [{**far, "start": 9200.0 + 20 * i, "stop": 9210.0 + 20 * i}])
        assert isinstance(out, list) or i == undecided - 1
    assert isinstance(out, Stop)
    assert out.reason.startswith(f"settled, CN undecided: the last {undecided} updates agree (CN 6 at P=0.50")


def test_a_probable_answer_stops_before_the_window_is_covered_after_more_agreeing_updates():
    far = {"start": 9100.0, "stop": 9110.0, "step": 1.0, "uid": "u", "score": 1.0}
    early = DEFAULT_STABILITY["early_updates"]
    for p, coverage, stops in ((0.93, 0.85, True), (0.93, 0.7, False), (0.8, 0.85, False)):
        pol, es, mus = _opened()
        out = None
        for i in range(early):  # the same answer, not confident (intervals too wide), the window not covered
            out = pol.next(np.concatenate([es, 9300 + np.arange(3 * (i + 1))]), mus,
                           _report(p=p, d_std=0.05, coverage=coverage),
                           suggest=lambda n, i=i: [{**far, "start": 9200.0 + 20 * i, "stop": 9210.0 + 20 * i}])
            assert isinstance(out, list) or i == early - 1
        assert isinstance(out, Stop) == stops
        if stops:
            assert out.reason.startswith(f"stable: the last {early} updates agree (CN 6, P=0.93")
            assert "85% of the model window measured" in out.reason


def test_proposals_skip_measured_energies_respect_the_budget_and_stop_when_nothing_is_new():
    pol, es, mus = _opened()
    pol.max_points = len(es) + 4
    pol.batch_size = 2
    proposals = [{"start": es[0], "stop": es[0] + 10, "step": 1.0, "uid": "a", "score": 0.9},
                 {"start": 9200.0, "stop": 9210.0, "step": 1.0, "uid": "b", "score": 0.5}]
    partial = _report(p=0.5, coverage=0.5)  # the window half measured: no stable or undecided stop
    out = pol.next(es, mus, partial, suggest=lambda n: proposals[:n])
    assert [m.uid for m in out] == ["a", "b"] and sum(len(m.energies) for m in out) == 4
    assert new_energies(out[0].energies, es).size == len(out[0].energies)  # none measured already
    # the proposals were measured without adding a point (e.g. all readings dropped): stop, do not loop
    assert pol.next(es, mus, partial, suggest=lambda n: proposals[:n]).reason.startswith("nothing new measured")
    pol, es, mus = _opened()
    step = DEFAULT_SURVEY[2]  # a range on the survey's own points
    again = [{"start": es.min(), "stop": es.min() + 2 * step, "step": step, "uid": "c", "score": 1.0}]
    assert pol.next(es, mus, partial, suggest=lambda n: again).reason.startswith("nothing new to measure")


def test_proposals_lie_on_one_lattice_with_the_survey():
    assert np.allclose(lattice_energies(10.2, 13.1, 1.5, 4.0), [10.0, 11.5, 13.0, 14.5])
    assert np.allclose(lattice_energies(10.0, 10.0, 1.5, 4.0), [10.0])
    with pytest.raises(ValueError, match="bad energy range"):
        lattice_energies(10.0, 9.0, 1.5, 4.0)
    pol, es, mus = _opened()
    origin = EDGE + DEFAULT_SURVEY[0]
    survey = es[:len(np.arange(DEFAULT_SURVEY[0], DEFAULT_SURVEY[1] + 1e-9, DEFAULT_SURVEY[2]))]
    lo = survey[-3] - 2.0  # a range with survey points inside it and one just above it
    props = [{"start": lo, "stop": survey[-2] + 0.4, "step": 1.5, "uid": "a", "score": 1.0}]
    (m,) = pol.next(es, mus, _report(p=0.5), suggest=lambda n: props)
    k = (m.energies - origin) / 1.5
    assert np.allclose(k, np.round(k))  # on the survey's lattice
    # widened to the lattice points at or outside the range's ends; the survey's own points not again
    assert m.energies.min() <= lo and m.energies.max() + 1.5 > survey[-2] + 0.4
    assert not np.isin(np.round(m.energies, 6), np.round(survey, 6)).any()
    inside = (es >= m.energies.min()) & (es <= m.energies.max())
    assert np.isin(np.round(survey, 6), np.round(es[inside], 6)).sum() >= 2
    together = np.unique(np.round(np.concatenate([m.energies, es[inside]]), 6))
    assert np.diff(together).max() <= 1.5 + 1e-9  # the survey points are lattice points: no gap left


def test_without_opening_the_policy_asks_for_the_survey_until_the_edge_is_found():
    pol = AdaptivePolicy(EDGE, opening=False)
    (m,) = pol.next([], [], {"edge_located": False}, suggest=lambda n: [])
    assert m.kind == "survey" and not pol.stopped


def test_new_energies():
    assert np.allclose(new_energies([1.0, 1.1, 2.0, 3.5], [1.05, 3.0]), [2.0, 3.5])
    assert np.allclose(new_energies([1.0, 2.0], []), [1.0, 2.0])


def test_an_aborted_scan_closes_the_agents_run(bundled_library, cu_agent_model):
    """A detector that fails mid-scan: the RunEngine closes the raw run, the plan's finalize step
    closes the agent's run with exit_status 'abort' (before, it was left open, without a stop)."""
    from bluesky import RunEngine

    from xanes_agent.agent import ModelStore, XANESAgent
    from xanes_agent.foundation.edges import edge_energy
    from xanes_agent.plans import adaptive_xanes_scan
    from xanes_agent.simulator import make_beamline, sample_from_library

    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=3)
    bl = make_beamline(sample, seed=0, flux=1e9)
    calls = {"n": 0}
    real_trigger = bl.det.trigger

    def failing_trigger():
        calls["n"] += 1
        if calls["n"] > 30:
            raise RuntimeError("detector lost")
        return real_trigger()

    bl.det.trigger = failing_trigger
    out = []
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}), emit=lambda n, d: out.append((n, d)))
    with pytest.raises(RuntimeError, match="detector lost"):
        RunEngine({})(adaptive_xanes_scan([bl.det], bl.mono, agent, edge_energy=edge_energy("Cu"), md=bl.md))
    assert agent.in_run is None
    assert out[-1][0] == "stop" and out[-1][1]["exit_status"] == "abort"
    assert agent.snapshot().stop_reason == "the scan ended before a stop rule held" and len(agent.snapshot().energy) > 0


def test_a_steep_pre_edge_peak_gets_a_second_fine_pass_on_the_main_rise():
    """Tetrahedral Ti4+/V5+/Cr6+: the steepest coarse interval can be the pre-edge peak; the edge
    (the main rise) must still be measured finely, or the agent never locates it (3 of 25 held-out
    Ti spectra stopped with 'edge not located' before this pass)."""

    def pre_edge_spectrum(e):
        e = np.asarray(e, float)
        return 2.0 * np.exp(-0.5 * ((e - 8983.0) / 1.5) ** 2) + 1.0 / (1.0 + np.exp(-(e - 8996.0) / 2.5))

    passes, es = _opening(pre_edge_spectrum)
    kinds = [m.kind for m in passes]
    assert kinds == ["survey", "edge", "edge", "normalization"]
    assert abs(passes[1].info["centre"] - 8983) < 3  # the first fine pass went to the peak
    assert abs(passes[2].info["centre"] - 8996) < 3 and "main rise" in passes[2].info["why"]
    order = np.argsort(es)
    e0 = find_e0(es[order], pre_edge_spectrum(es[order]))
    assert abs(e0 - 8996) < 1 and passes[2].energies.min() < e0 < passes[2].energies.max()
    assert np.median(passes[3].energies) == pytest.approx(e0 + NORM_OFFSET)


def _two_step(e):
    """A synthetic two-step edge: 0.45 of the step at 8988 eV, the steeper 0.55 at 8997 eV (as Cu
    mp-556002/6, whose opening passes once put E0 5.9 eV low)."""
    e = np.asarray(e, float)
    return 0.45 / (1 + np.exp(-(e - 8988.0) / 1.0)) + 0.55 / (1 + np.exp(-(e - 8997.0) / 0.7))


# two tetrahedral Co2+ K edges (FEFF10; noise-free, read off the library spectra): the first rise
# peaks at 7717-7718 eV and falls back to 0.4-0.6 of the step before the main rise, so the full
# scan's E0 is on the first rise, 9-10 eV below the main one
_CO_E = [7650, 7711, 7712, 7713, 7714, 7715, 7716, 7717, 7718, 7719, 7720, 7721, 7722, 7723, 7724, 7725,
         7726, 7727, 7728, 7729, 7730, 7740, 7750, 7760, 7770, 7780, 7790, 7830]
_CO_MU = {
    "mp-757403/10": [0.338, 0.338, 0.344, 0.361, 0.405, 0.473, 0.627, 0.9, 0.855, 0.726, 0.696, 0.733, 0.811,
                     0.922, 1.061, 1.226, 1.399, 1.57, 1.676, 1.674, 1.647, 1.308, 1.216, 1.191, 1.27, 1.347,
                     1.334, 1.334],
    "mp-24156/0": [0.342, 0.346, 0.364, 0.412, 0.5, 0.615, 0.781, 0.906, 0.91, 0.887, 0.892, 0.933, 1.009,
                   1.104, 1.215, 1.344, 1.461, 1.524, 1.534, 1.514, 1.486, 1.453, 1.173, 1.147, 1.304, 1.388,
                   1.38, 1.38],
}


# a tetrahedral Cu K edge (FEFF 9, OmniXAS mp-680211 site 8; noise-free, read off the simulator at
# 1 eV): the first rise is as steep as the main one and peaks at 8993 eV, in the survey gap between
# the pass below (where the survey point at 8991 eV had risen) and the fine points on the main rise
_CU_E = [8940, 8960, 8975, 8980, 8981, 8982, 8983, 8984, 8985, 8986, 8987, 8988, 8989, 8990, 8991, 8992, 8993,
         8994, 8995, 8996, 8997, 8998, 8999, 9000, 9001, 9002, 9003, 9004, 9005, 9006, 9007, 9008, 9009, 9010,
         9015, 9020, 9030, 9040, 9050, 9060]
_CU_MU = [0.337, 0.337, 0.337, 0.337, 0.337, 0.337, 0.337, 0.341, 0.35, 0.365, 0.398, 0.456, 0.52, 0.6, 0.731,
          0.951, 1.138, 1.029, 0.935, 0.946, 1.032, 1.174, 1.351, 1.558, 1.771, 1.86, 1.797, 1.711, 1.604, 1.481,
          1.384, 1.332, 1.309, 1.313, 1.309, 1.222, 1.201, 1.251, 1.353, 1.406]


def _co(site):
    return lambda e: np.interp(e, _CO_E, _CO_MU[site])


def _cu(e):
    return np.interp(e, _CU_E, _CU_MU)


_TWO_STEP_EDGES = {"synthetic, steeper second step": (_two_step, EDGE),
                   "Co mp-757403/10, first step peaks": (_co("mp-757403/10"), 7709.0),
                   "Co mp-24156/0, first step peaks higher": (_co("mp-24156/0"), 7709.0),
                   "Cu mp-680211/8, first step as steep as the main one": (_cu, EDGE)}


@pytest.mark.parametrize("name", list(_TWO_STEP_EDGES))
def test_the_opening_passes_put_e0_where_the_full_scan_does_on_two_step_edges(name):
    """The models read the spectrum from E0, where the main rise crosses half the step; on a
    two-step edge the first step can cross it below or above the fine points around the steepest
    coarse interval. The opening passes (survey, edge pass, a pass on E0 where it lies in a coarse
    gap) give the full scan's E0 within 0.5 eV; a plain edge gets one fine pass."""
    spectrum, edge = _TWO_STEP_EDGES[name]
    grid = np.arange(edge - 20.0, edge + 100.01, 0.5)
    passes, es = _opening(spectrum, edge=edge)
    order = np.argsort(es)
    assert find_e0(es[order], spectrum(es[order])) == pytest.approx(find_e0(grid, spectrum(grid)), abs=0.5)
    assert [m.kind for m in _opening(_edge_spectrum)[0]] == ["survey", "edge", "normalization"]


@pytest.mark.parametrize("name", ["synthetic, steeper second step",
                                  "Cu mp-680211/8, first step as steep as the main one"])
def test_a_pass_on_e0_when_half_the_step_is_crossed_in_a_coarse_gap(name, monkeypatch):
    """Where the first step of a two-step edge crosses half the step between coarse points, a
    pass centred on E0 measures it; without that pass the opening passes' E0 is off by over 1 eV."""
    spectrum, edge = _TWO_STEP_EDGES[name]
    grid = np.arange(edge - 20.0, edge + 100.01, 0.5)
    full = find_e0(grid, spectrum(grid))
    passes, es = _opening(spectrum, edge=edge)
    assert any("E0 (half the edge step)" in m.info.get("why", "") for m in passes)
    monkeypatch.setattr(AdaptivePolicy, "half_step_pass", lambda self, e, m: None)
    _, es = _opening(spectrum, edge=edge)
    order = np.argsort(es)
    assert abs(find_e0(es[order], spectrum(es[order])) - full) > 1.0


# a tetrahedral Ti4+ K edge (FEFF10, library site mp-641710_40-Ti-sub; noise-free, read off the
# simulator at 1 eV): the pre-edge peak reaches 0.76 of the step and falls back to 0.30 of it, just
# above the level at which steepest_rise calls a peak pre-edge, so finely measured it is the steepest rise
_TI_E = [4946, 4966, 4967, 4968, 4969, 4970, 4971, 4972, 4973, 4974, 4975, 4976, 4977, 4978, 4979, 4980,
         4981, 4982, 4983, 4984, 4985, 4986, 4987, 4988, 4989, 4990, 4991, 4992, 4993, 4994, 4995, 5000,
         5010, 5020, 5030, 5040]
_TI_MU = [0.3, 0.3, 0.345, 0.386, 0.56, 1.058, 0.918, 0.783, 0.791, 0.706, 0.626, 0.6, 0.623, 0.696, 0.8,
          0.917, 1.027, 1.101, 1.149, 1.2, 1.256, 1.299, 1.318, 1.318, 1.324, 1.349, 1.38, 1.406, 1.427,
          1.45, 1.478, 1.598, 1.43, 1.17, 1.204, 1.213]


def test_an_edge_lost_to_later_points_gets_a_fine_pass_instead_of_a_stop_without_answer():
    """Proposals measured on a strong pre-edge peak can make it the steepest rise while it lies
    between coarse points: the agent's edge (``locate_edge``) is lost. The plan measures the peak
    finely, the edge is located again with the full scan's E0, and the scan goes on (one of 60
    held-out Ti spectra stopped with 'edge not located' and no answer before this)."""
    from xanes_agent.agent.predictor import locate_edge

    def spectrum(e):
        return np.interp(e, _TI_E, _TI_MU)

    def located(es):
        order = np.argsort(es)
        return locate_edge(es[order], spectrum(es[order]))[0]

    edge = 4966.0
    pol = AdaptivePolicy(edge)
    es = np.zeros(0)
    while pol.in_opening:
        (m,) = pol.next(es, spectrum(es))
        es = np.concatenate([es, m.energies])
    assert located(es) is not None  # the opening passes located it
    pre_edge = {"start": 4969.5, "stop": 4972.5, "step": 1.5, "uid": "p1"}
    (prop,) = pol.next(es, spectrum(es), _report(p=0.5, coverage=0.3), suggest=lambda n: [pre_edge])
    es = np.concatenate([es, prop.energies])
    assert located(es) is None  # the proposal's points on the peak moved the steepest rise off fine points
    (again,) = pol.next(es, spectrum(es), _report(located=False, coverage=0.3), suggest=lambda n: [pre_edge])
    assert again.kind == "edge" and not pol.stopped and 4966 < again.info["centre"] < 4974
    es = np.concatenate([es, again.energies])
    grid = np.arange(edge - 20.0, edge + 100.01, 0.5)
    assert located(es) == pytest.approx(locate_edge(grid, spectrum(grid))[0], abs=0.5)
