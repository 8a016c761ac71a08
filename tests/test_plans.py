"""adaptive_xanes_scan with a real RunEngine on the simulator."""

import json

import numpy as np
from bluesky import RunEngine
from event_model import DocumentNames, schema_validators

from xanes_agent.agent import ModelStore, XANESAgent
from xanes_agent.foundation.edges import edge_energy
from xanes_agent.foundation.normalization import find_e0
from xanes_agent.plans import adaptive_xanes_scan
from xanes_agent.simulator import make_beamline, sample_from_library


def _run(sample, model, **kw):
    bl = make_beamline(sample, seed=0, flux=1e9, include_truth=True)
    agent = XANESAgent(ModelStore(models={"Cu": model}))
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE(adaptive_xanes_scan([bl.det], bl.mono, agent, edge_energy=edge_energy("Cu"), md=bl.md, **kw))
    return docs, agent


def test_adaptive_scan_stops_by_its_criterion_with_fewer_points(bundled_library, cu_agent_model):
    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=2, coordination_number=6.0)
    docs, agent = _run(sample, cu_agent_model,
                       thresholds={"cn_probability": 0.4, "distance_std": 0.5, "charge_std": 5.0})
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    stop = docs[-1][1]
    assert stop["exit_status"] == "success" and stop["reason"].startswith("confident")
    e0 = find_e0(sample.energy, sample.mu)
    full = len(np.arange(e0 - 30, e0 + 70 + 1e-9, 0.5))
    primary = [d for n, d in docs if n == "descriptor" and d["name"] == "primary"][0]["uid"]
    n_points = sum(1 for n, d in docs if n == "event" and d["descriptor"] == primary)
    assert n_points < full
    decisions = [d for n, d in docs if n == "descriptor" and d["name"] == "decisions"][0]["uid"]
    kinds = [json.loads(d["data"]["agent_decision"])["kind"] for n, d in docs
             if n == "event" and d["descriptor"] == decisions]
    assert kinds[:2] == ["survey", "edge"] and kinds[-1] == "stop"
    start = docs[0][1]
    assert start["plan_name"] == "adaptive_xanes_scan" and start["element"] == "Cu"
    assert start["plan_args"]["strategy"] == "importance_uncertainty"


def test_point_budget_and_proposals_recorded(bundled_library, cu_agent_model):
    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=4)
    # no confident and no stable stop, whatever the sample (the library's test split grows): the budget ends it
    docs, _ = _run(sample, cu_agent_model, max_points=70,
                   thresholds={"cn_probability": 1.01, "distance_std": 0.0, "charge_std": 0.0},
                   stability={"updates": 0, "undecided_updates": 0, "early_updates": 0})
    stop = docs[-1][1]
    assert "point budget" in stop["reason"]
    decisions = [json.loads(d["data"]["agent_decision"]) for n, d in docs
                 if n == "event" and "agent_decision" in d["data"]]
    proposals = [d for d in decisions if d["kind"] == "proposal"]
    assert proposals and all({"uid", "start", "stop", "score"} <= set(p) for p in proposals)


def test_the_view_draws_the_runs_own_decision_line(bundled_library, cu_agent_model):
    """The P(CN) a plan takes for a decision travels in its start document to the agent's snapshot
    and the live view's decision line; a start document without it (or with nonsense) keeps the default."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xanes_agent.agent.agent import _decision_probability
    from xanes_agent.agent.view import draw

    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=4)
    _, agent = _run(sample, cu_agent_model, max_points=40, stability={"cn_probability": 0.75})
    snap = agent.snapshot()
    assert snap.decision_probability == 0.75
    fig = plt.figure(figsize=(12, 7))
    draw(fig, snap)
    labels = [ln.get_label() for ax in fig.axes for ln in ax.get_lines()]
    assert "decision (P >= 0.75)" in labels and "decision (P >= 0.6)" not in labels
    plt.close(fig)
    for start in ({}, {"plan_args": "x"}, {"plan_args": {"stability": {"cn_probability": "0.7"}}},
                  {"plan_args": {"stability": {"cn_probability": 1.5}}},
                  {"plan_args": {"stability": {"cn_probability": True}}}):
        assert _decision_probability(start) is None


def test_queue_safe_plans_measure_what_they_say(bundled_library):
    import pytest

    from xanes_agent.plans import xas_ranges_scan, xas_survey_scan

    # a two-step edge (named: a random pick changes with every library snapshot)
    sample = sample_from_library(bundled_library, sample_id="mp-557143/8")
    bl = make_beamline(sample, seed=0, flux=1e9)
    docs = []
    RE = RunEngine({})
    RE.subscribe(lambda n, d: docs.append((n, d)))
    # no md: field names come from the devices' hints
    RE(xas_ranges_scan([bl.det], bl.mono, [[9000, 9002, 0.5], [9010, 9011, 1.0]]))
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    energies = [d["data"][bl.mono.readback.name] for n, d in docs if n == "event"]
    assert np.allclose(energies, [9000, 9000.5, 9001, 9001.5, 9002, 9010, 9011])
    assert docs[0][1]["plan_args"] == {"ranges": [[9000.0, 9002.0, 0.5], [9010.0, 9011.0, 1.0]]}
    assert docs[0][1]["num_points"] == 7
    docs.clear()
    RE(xas_survey_scan([bl.det], bl.mono, edge_energy("Cu"), md=bl.md))
    e = np.array([d["data"][bl.mono.readback.name] for n, d in docs if n == "event"])
    e0 = find_e0(sample.energy, sample.mu)
    from xanes_agent.agent.policy import DEFAULT_EDGE_HALFWIDTH, DEFAULT_SURVEY, NORM_OFFSET
    from xanes_agent.foundation.energies import range_energies

    n_survey = len(range_energies(*DEFAULT_SURVEY))
    n_edge = len(range_energies(-DEFAULT_EDGE_HALFWIDTH, DEFAULT_EDGE_HALFWIDTH, 0.5))
    n_norm = 1
    norm = e[-n_norm:]  # last: the post-edge normalization point, E0 + 50
    fine = e[n_survey:-n_norm]  # after the survey: 0.5 eV passes around the edge it found
    mu = np.array([d["data"][bl.det.mu.name] for n, d in docs if n == "event"])
    from xanes_agent.agent.policy import coarse_edge

    assert np.allclose(np.diff(fine[:n_edge]), 0.5)
    assert np.median(fine[:n_edge]) == pytest.approx(coarse_edge(e[:n_survey], mu[:n_survey]), abs=0.26)
    # the sample's edge (max derivative) is inside the passes, even for a two-step edge like this
    # sample's (mp-557143/8: half the step at E0 = 8989.9 eV, a plateau, the other half 6 eV above;
    # on a 5 eV survey the steepest interval was the second step and a pass below the first was
    # needed; the 6 eV survey's steepest interval spans both; the rule itself: test_policy)
    assert fine.min() < e0 < fine.max()
    order = np.argsort(e[:-n_norm])
    e0_measured = find_e0(e[:-n_norm][order], mu[:-n_norm][order])
    assert fine.min() < e0_measured < fine.max() and e0_measured == pytest.approx(e0, abs=1.0)
    assert len(norm) == 1 and norm[0] == pytest.approx(e0_measured + NORM_OFFSET)
    with pytest.raises(ValueError, match="bad energy range"):
        RE(xas_ranges_scan([bl.det], bl.mono, [[9010, 9000, 0.5]]))


def test_coarse_edge_is_within_half_a_step_of_the_true_edge():
    from xanes_agent.agent.policy import coarse_edge

    e = np.arange(8950.0, 9050.0, 5.0)
    for true in (8979.0, 8981.5, 8983.9):
        mu = 1.0 / (1.0 + np.exp(-(e - true) / 1.0))
        assert abs(coarse_edge(e, mu) - true) <= 2.5
    assert np.isnan(coarse_edge([1.0, 2.0], [0.0, 1.0]))


def test_stable_reason_needs_coverage_and_agreement():
    from xanes_agent.agent.stopping import DEFAULT_STABILITY, stable_reason

    d = [(4, 2.00, 1.50), (4, 2.005, 1.52), (4, 2.004, 1.49)]
    assert stable_reason(d, 1.0, DEFAULT_STABILITY).startswith("stable")
    assert stable_reason(d, 0.9, DEFAULT_STABILITY) == ""  # window not covered yet
    n = DEFAULT_STABILITY["updates"]
    assert 2 <= n <= 3
    assert stable_reason(d[:n - 1], 1.0, DEFAULT_STABILITY) == ""  # too few updates
    assert stable_reason(d[:2] + [(6, 2.004, 1.49)], 1.0, DEFAULT_STABILITY) == ""  # CN changed
    assert stable_reason(d[:2] + [(4, 2.03, 1.49)], 1.0, DEFAULT_STABILITY) == ""  # distance moved 0.03 A
    assert stable_reason(d[:2] + [None], 1.0, DEFAULT_STABILITY) == ""
    assert stable_reason([(4, 2.0, None)] * 3, 1.0, DEFAULT_STABILITY)  # a model without charge
    assert stable_reason(d, 1.0, {**DEFAULT_STABILITY, "updates": 0}) == ""  # switched off
    # below the decision probability agreeing updates stop the scan too, said undecided
    m = DEFAULT_STABILITY["undecided_updates"]
    assert m >= 2
    assert stable_reason(d[-m:], 1.0, DEFAULT_STABILITY, probability=0.52).startswith("settled, CN undecided")
    same = [(5, 2.041, 1.5)] * m
    why = stable_reason(same, 1.0, DEFAULT_STABILITY, probability=0.52)
    assert why.startswith("settled, CN undecided") and "P=0.52" in why and "not a decision" in why
    assert stable_reason(same[1:], 1.0, DEFAULT_STABILITY, probability=0.52) == ""
    assert stable_reason(same, 0.9, DEFAULT_STABILITY, probability=0.52) == ""  # window not covered
    assert stable_reason(same[:-1] + [(4, 2.041, 1.5)], 1.0, DEFAULT_STABILITY, probability=0.52) == ""
    assert stable_reason(same, 1.0, {**DEFAULT_STABILITY, "undecided_updates": 0}, probability=0.52) == ""
    assert stable_reason(same, 1.0, DEFAULT_STABILITY, probability=0.61).startswith("stable")
    # before the window is covered: more agreeing updates, at the confident stop's probability
    k = DEFAULT_STABILITY["early_updates"]
    assert k > n and DEFAULT_STABILITY["early_cn_probability"] == 0.9
    early = [(6, 2.01, 3.0)] * k
    why = stable_reason(early, 0.85, DEFAULT_STABILITY, probability=0.93)
    assert why.startswith(f"stable: the last {k} updates agree (CN 6, P=0.93") and "85% of the model window" in why
    assert stable_reason(early[1:], 0.85, DEFAULT_STABILITY, probability=0.93) == ""  # one update short
    assert stable_reason(early, 0.85, DEFAULT_STABILITY, probability=0.85) == ""  # a decision, not P >= 0.9
    assert stable_reason(early, 0.75, DEFAULT_STABILITY, probability=0.93) == ""  # below 80 % of the window
    assert stable_reason(early[:-1] + [(6, 2.03, 3.0)], 0.85, DEFAULT_STABILITY, probability=0.93) == ""
    assert stable_reason(early, 0.85, DEFAULT_STABILITY) == ""  # no CN probability: the window first
    assert stable_reason(early, 0.85, {**DEFAULT_STABILITY, "early_updates": 0}, probability=0.93) == ""
    part = {**DEFAULT_STABILITY, "coverage": 0.8}  # a stable answer from 80 % of the window
    assert "90% of the model window measured" in stable_reason(d, 0.9, part)
    assert stable_reason(d, 0.7, part) == ""


def test_each_subpackage_imports_first_in_a_fresh_interpreter():
    import subprocess
    import sys

    for mod in ("xanes_agent.plans", "xanes_agent.agent", "xanes_agent.simulator", "xanes_agent.models"):
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True)
        assert r.returncode == 0, f"import {mod}: {r.stderr[-500:]}"


def test_ranges_scan_runs_on_any_ophyd_positioner_and_detector():
    """ophyd's own simulated motor and detector: fields come from their hints, no md needed."""
    from ophyd.sim import det, motor

    from xanes_agent.plans import xas_ranges_scan

    docs = []
    RunEngine({})(xas_ranges_scan([det], motor, [[-1.0, 1.0, 0.5]]), lambda n, d: docs.append((n, d)))
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["motor"] for e in events] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert all("det" in e["data"] for e in events)


def test_a_property_that_does_not_decide_neither_holds_nor_makes_a_stop():
    """The FEFF charge transfer is predicted and reported, but the decision, the stability check
    and the confident stop use only the deciding properties: however much it moves or however wide
    it is, the scan's stop is the one the CN, distance and charge label give."""
    from xanes_agent.agent.stopping import (
        DEFAULT_STABILITY,
        DEFAULT_THRESHOLDS,
        decision_of,
        stable_reason,
        stop_reason,
    )
    from xanes_agent.foundation.properties import DECIDING, FEFF_CHARGE, PROPERTIES

    assert FEFF_CHARGE in PROPERTIES and FEFF_CHARGE not in DECIDING
    reports = []
    for q in (0.3, -0.4, 0.9):  # the FEFF charge swings by more than any tolerance
        reports.append({"edge_located": True, "predictions": {
            "coordination_number": {"prediction": 6.0, "probability": 0.97},
            "mean_nn_distance": {"prediction": 2.01, "std": 0.004},
            "charge": {"prediction": 3.0, "std": 0.01},
            FEFF_CHARGE: {"prediction": q, "std": 5.0}}})
    d = [decision_of(r) for r in reports]
    assert d[0] == (6.0, 2.01, 3.0)  # the deciding properties only
    assert stable_reason(d, 1.0, DEFAULT_STABILITY, probability=0.97).startswith("stable")
    assert stop_reason(reports[-1], DEFAULT_THRESHOLDS).startswith("confident")  # its std of 5 e does not hold it
    assert "feff" not in stop_reason(reports[-1], DEFAULT_THRESHOLDS)
