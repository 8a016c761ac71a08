"""The streaming agent against the simulator and a real RunEngine."""

import json

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from event_model import DocumentNames, RunRouter, pack_event_page, schema_validators

from xanes_agent.agent import ModelStore, PartialSpectrum, XANESAgent, agent_factory, make_strategy
from xanes_agent.agent.predictor import LivePredictor, locate_edge
from xanes_agent.foundation.normalization import find_e0, steepest_rise
from xanes_agent.models.fast import HAVE_NUMBA, FusedForests
from xanes_agent.simulator import make_beamline, sample_from_library


def validate(docs):
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)


@pytest.fixture(scope="module")
def confident_sample(bundled_library, cu_agent_model):
    """A held-out Cu sample whose clean (noise-free) spectrum gets a clear CN prediction."""
    pred = LivePredictor(cu_agent_model)
    test = bundled_library.where(element="Cu", split="test", source="omnixas-feff9")
    for i in range(len(test)):
        s = sample_from_library(test, sample_id=str(test.ids[i]))
        if not np.isin(s.labels.get("coordination_number"), (4, 5, 6)):
            continue
        st = pred.update(s.energy, s.mu)
        if st.edge_located and st.predictions["coordination_number"]["probability"] > 0.7:
            return s
    pytest.fail("no confidently predicted held-out sample")


def run_scan(sample, model, flux=1e10, seed=0, **agent_kw):
    bl = make_beamline(sample, seed=seed, flux=flux)
    out = []
    agent = XANESAgent(ModelStore(models={"Cu": model}), emit=lambda n, d: out.append((n, d)), **agent_kw)
    raw = []
    RE = RunEngine({})
    RE.subscribe(agent)
    RE.subscribe(lambda n, d: raw.append((n, d)))
    e0 = find_e0(sample.energy, sample.mu)
    energies = np.arange(e0 - 30, e0 + 60 + 1e-9, 0.5)
    RE(bp.list_scan([bl.det], bl.mono, list(energies)), **bl.md)
    return agent, out, raw, bl, energies


def test_end_to_end_in_process(confident_sample, cu_agent_model):
    agent, out, raw, bl, energies = run_scan(confident_sample, cu_agent_model)
    assert agent.errors == 0
    final = agent.finished[-1]
    # the clean spectrum: the same energies, noise-free counts
    i0, it = bl.det.expected_counts(energies)
    clean = LivePredictor(cu_agent_model).update(energies, np.log(i0 / it))
    assert final["predictions"]["coordination_number"]["prediction"] == \
        clean.predictions["coordination_number"]["prediction"]
    assert final["coverage"] == 1.0
    names = [n for n, _ in out]
    assert names[:2] == ["start", "descriptor"] and names[-1] == "stop"
    assert out[0][1]["raw_run_uid"] == raw[0][1]["uid"]
    assert names.count("event") == len(energies) + 1  # one per raw event, one more at stop
    validate(out)
    validate(raw)
    last = [d for n, d in out if n == "event"][-1]["data"]
    assert set(last) >= {"cn", "cn_probability", "cn_spread", "distance", "distance_std", "charge", "charge_std",
                         "coverage", "proposals", "in_domain", "domain_score", "calibrated", "distance_lo68",
                         "distance_hi90", "charge_lo90", "cn_raw_probability"}
    assert last["calibrated"] and last["distance_lo90"] <= last["distance_lo68"] <= last["distance"]
    assert last["intervals_across_codes"] is False  # a same-code store (the simulator's FEFF10 spectra)
    assert last["update_seconds"] < 1.0


def test_trees_that_disagree_put_a_run_out_of_domain_and_say_so(confident_sample, cu_agent_model):
    dom = cu_agent_model.calibration.domain
    assert dom.spread_limits is not None
    saved = dom.spread_limits, dom.far_limits
    try:  # no distance is too far, and no spread is small enough: the second test alone flags
        dom.spread_limits, dom.far_limits = np.zeros(3), np.full(3, np.inf)
        agent, out, raw, bl, energies = run_scan(confident_sample, cu_agent_model)
    finally:
        dom.spread_limits, dom.far_limits = saved
    last = [d for n, d in out if n == "event"][-1]["data"]
    assert not last["in_domain"] and last["domain_trees_disagree"] and last["distance_tree_std"] > 0
    flag = [w for w in agent.warnings if ": out of domain: " in w]
    assert len(flag) == 1 and "distance trees disagree" in flag[0]
    assert agent.finished[-1]["domain_far"] is False and agent.finished[-1]["in_domain"] is False


def test_two_tests_near_their_limits_together_put_a_run_out_of_domain_and_say_so(confident_sample,
                                                                                   cu_agent_model):
    dom = cu_agent_model.calibration.domain
    assert dom.joint_limits is not None  # a bundle of format 11 reads the two tests together
    saved = dom.spread_limits, dom.far_limits, dom.alone_limits, dom.joint_limits
    try:  # neither test near its own limit, but any joint reading beyond the (zero) joint limit
        dom.spread_limits, dom.far_limits = np.full(3, 1e6), np.full(3, 1e6)
        dom.alone_limits, dom.joint_limits = np.full(3, np.inf), np.zeros(3)
        agent, out, raw, bl, energies = run_scan(confident_sample, cu_agent_model)
    finally:
        dom.spread_limits, dom.far_limits, dom.alone_limits, dom.joint_limits = saved
    last = [d for n, d in out if n == "event"][-1]["data"]
    assert not last["in_domain"] and not last["domain_trees_disagree"]
    flag = [w for w in agent.warnings if ": out of domain: " in w]
    assert len(flag) == 1 and "near the edge of the Cu model's training spectra" in flag[0]
    assert "distance trees disagree there" in flag[0]
    assert agent.finished[-1]["domain_far"] is False and agent.finished[-1]["in_domain"] is False


def test_uncertainty_shrinks_and_proposals_are_absolute(confident_sample, cu_agent_model):
    agent, out, raw, bl, energies = run_scan(confident_sample, cu_agent_model)
    events = [d["data"] for n, d in out if n == "event"]
    located = [d for d in events if d["edge_located"]]
    assert located, "edge never located"
    mid = located[len(located) // 3]
    props = json.loads(mid["proposals"])
    assert props and all(energies[0] - 50 < p["start"] < p["stop"] < energies[-1] + 50 for p in props)
    assert located[-1]["coverage"] >= located[0]["coverage"]


def test_event_pages_handled_natively(confident_sample, cu_agent_model):
    bl = make_beamline(confident_sample, seed=0, flux=1e10)
    RE = RunEngine({})
    raw = []
    RE(bp.scan([bl.det], bl.mono, 8950, 9060, 60), lambda n, d: raw.append((n, d)), **bl.md)
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    calls = {"page": 0}
    orig = agent.event_page

    def counting(doc):
        calls["page"] += 1
        return orig(doc)

    agent.event_page = counting
    events = [d for n, d in raw if n == "event"]
    agent("start", raw[0][1])
    agent("descriptor", raw[1][1])
    for k in range(0, len(events), 20):  # three pages of 20 events
        agent("event_page", pack_event_page(*events[k:k + 20]))
    agent("stop", raw[-1][1])
    assert calls["page"] == 3
    assert agent.finished[-1]["n_points"] == 60 and agent.finished[-1]["n_updates"] == 4


def test_interleaved_runs_kept_apart(confident_sample, cu_agent_model):
    docs = []
    for seed, (lo, hi) in enumerate([(8950, 9060), (8990, 9030)]):
        bl = make_beamline(confident_sample, seed=seed, flux=1e10)
        run = []
        RunEngine({})(bp.scan([bl.det], bl.mono, lo, hi, 40 + 10 * seed), lambda n, d, run=run: run.append((n, d)),
                      **bl.md)
        docs.append(run)
    a, b = docs
    merged = [a[0], b[0], a[1], b[1]] + [x for pair in zip(a[2:-1], b[2:-1]) for x in pair] + \
        b[2 + len(a) - 3:-1] + [a[-1], b[-1]]
    factory = agent_factory(ModelStore(models={"Cu": cu_agent_model}))
    router = RunRouter([factory])
    for name, doc in merged:
        router(name, doc)
    agents = factory.agents
    assert len(agents) == 2
    assert [ag.finished[-1]["n_points"] for ag in agents] == [40, 50]
    assert {ag.finished[-1]["raw_run_uid"] for ag in agents} == {a[0][1]["uid"], b[0][1]["uid"]}
    # one agent subscribed directly cannot follow both: it says so, and keeps what it had
    direct = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    for name, doc in merged:
        direct(name, doc)
    assert any("started before its stop document" in w and "RunRouter" in w for w in direct.warnings)
    assert [r["raw_run_uid"] for r in direct.finished] == [a[0][1]["uid"], b[0][1]["uid"]]
    # L3-edge data for a K-edge model: refused with one warning, not analysed
    other = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    other("start", {**a[0][1], "uid": "l3-run", "edge": "L3"})
    assert other.run is None and any("L3-edge data" in w for w in other.warnings)


def test_bad_readings_units_duplicates():
    ps = PartialSpectrum(edge_energy=8979.0)
    ps.add([8.990, 8.991, 8.991], [0.1, 0.2, 0.4])  # keV by mistake, one energy twice
    e, mu = ps.arrays()
    assert "keV" in ps.unit_note
    np.testing.assert_allclose(e, [8990.0, 8991.0])
    np.testing.assert_allclose(mu, [0.1, 0.3])
    ps.add([8.992, np.nan, 8.994], [np.inf, 0.5, 0.6])
    assert ps.n_dropped == 2 and len(ps) == 3
    with pytest.raises(ValueError, match="differ in length"):
        ps.add([1, 2], [1])
    # judged reading by reading: a zero, an absurd value and another edge's energy are rejected,
    # a keV reading among eV ones converted, a boolean mu refused; nothing added before is lost
    ps.add([0.0, 1e30, 5000.0, 8995.0, 8.996], [0.1, 0.1, 0.1, 0.7, 0.8])
    ps.add([8997.0], [True])
    e, mu = ps.arrays()
    np.testing.assert_allclose(e, [8990.0, 8991.0, 8994.0, 8995.0, 8996.0])
    assert ps.n_rejected == 4 and ps.n_kev == 5 and "rejected" in ps.summary()


def test_binned_buffer_is_bounded_and_exact():
    """A fly scan's million readings: memory fixed, len bounded by the bins, each bin's mean equal
    to the readings' mean; a step scan's energies kept exactly; pages in any order give the same."""
    from xanes_agent.agent.spectrum import BIN_WIDTH, EDGE_WINDOW

    rng = np.random.default_rng(0)
    ps = PartialSpectrum(edge_energy=8979.0)
    ps.add([8979.0], [1.0])
    nbytes = ps._sum_e.nbytes + ps._sum_mu.nbytes + ps._count.nbytes
    e = rng.uniform(8950.0, 9100.0, 1_000_000)
    mu = np.sin(e / 7.0) + rng.normal(0, 0.01, e.size)
    for k in range(0, e.size, 1000):
        ps.add(e[k:k + 1000], mu[k:k + 1000])
    assert ps._sum_e.nbytes + ps._sum_mu.nbytes + ps._count.nbytes == nbytes < 2_000_000
    assert ps.n_readings == 1_000_001 and len(ps) <= 2 * EDGE_WINDOW / BIN_WIDTH + 1
    eb, mb = ps.arrays()
    assert len(eb) == len(ps) and np.all(np.diff(eb) > 0)
    # the reference: the same bins by np.bincount over every reading (the 8979.0 one included)
    all_e, all_mu = np.append(e, 8979.0), np.append(mu, 1.0)
    idx = np.floor((all_e - (8979.0 - EDGE_WINDOW)) / BIN_WIDTH).astype(int)
    cnt = np.bincount(idx)
    filled = np.flatnonzero(cnt)
    np.testing.assert_allclose(eb, np.bincount(idx, all_e)[filled] / cnt[filled], rtol=1e-12)
    np.testing.assert_allclose(mb, np.bincount(idx, all_mu)[filled] / cnt[filled], rtol=1e-9, atol=1e-12)
    # a step scan at 0.5 eV, added backwards one point at a time: exact energies, sorted
    step = PartialSpectrum(edge_energy=8979.0)
    grid = np.arange(8960.0, 9060.0, 0.5)
    for x in grid[::-1]:
        step.add([x], [x - 8960.0])
    es, ms = step.arrays()
    np.testing.assert_array_equal(es, grid)
    np.testing.assert_allclose(ms, grid - 8960.0)
    # single float readings (a fly scan's events) take the scalar path: the same bins, the same
    # judgement (NaN dropped, keV converted, impossible rejected) as arrays
    one, many = PartialSpectrum(edge_energy=8979.0), PartialSpectrum(edge_energy=8979.0)
    vals = [(8979.0, 1.0), (8990.05, 2.0), (8990.07, 4.0), (float("nan"), 1.0), (8.995, 3.0), (5000.0, 1.0)]
    for x, y in vals:
        one.add(x, y)
    many.add([v[0] for v in vals], [v[1] for v in vals])
    for p, q in zip(one.arrays(), many.arrays()):
        np.testing.assert_allclose(p, q, rtol=1e-14)
    assert (one.n_dropped, one.n_kev, one.n_rejected, one.n_readings, len(one)) == \
        (many.n_dropped, many.n_kev, many.n_rejected, many.n_readings, len(many)) == (1, 1, 1, 4, 3)


def test_edge_located_however_densely_the_passes_measured_below_it():
    """A tetrahedral Ti4+ K edge (FEFF10, mp-1212393 site 6, counting noise) as the opening passes
    measured it: the survey, a fine pass over the pre-edge peak (1.3 at 4970 eV), one over the
    first step and the main rise (read as measured). Most points below E0 lie on the peak and the
    first step; their median (0.92) said "no clear absorption step" though mu rises from 0.34 to
    1.2-1.8. Pure noise stays unlocated."""
    smooth_e = [4900, 4966, 4967, 4968, 4969, 4970, 4971, 4972, 4973, 4974, 4975, 4976, 4977, 4978, 4996,
                5002, 5014, 5065]
    smooth_mu = [0.337, 0.337, 0.348, 0.392, 0.607, 1.306, 0.924, 0.621, 0.545, 0.532, 0.537, 0.562, 0.635,
                 0.771, 1.586, 1.3, 1.15, 1.2]
    fine = [0.771, 0.853, 0.929, 0.992, 1.03, 1.043, 1.028, 1.008, 0.976, 0.959, 0.939, 0.929, 0.93, 0.939,
            0.961, 0.989, 1.024, 1.07, 1.114, 1.172, 1.232, 1.3, 1.374, 1.456, 1.537, 1.613, 1.674, 1.735,
            1.767]  # 4978 .. 4992 eV in 0.5 eV steps
    coarse = np.concatenate([np.arange(4936.0, 5026.1, 6.0), np.arange(4966.5, 4971.6, 0.5),
                             [5038.5, 5039.5, 5040.5]])
    coarse = coarse[(coarse < 4978) | (coarse > 4992)]
    e = np.concatenate([coarse, np.arange(4978.0, 4992.1, 0.5)])
    mu = np.concatenate([np.interp(coarse, smooth_e, smooth_mu), fine])
    order = np.argsort(e)
    e0, why = locate_edge(e[order], mu[order])
    assert steepest_rise(e[order], mu[order]) == 4989.5 and e0 == find_e0(e[order], mu[order]), why

    rng = np.random.default_rng(0)
    located = sum(locate_edge(np.sort(rng.uniform(0, 100, 60)), rng.normal(0, 1, 60))[0] is not None
                  for _ in range(200))
    assert located <= 10  # a plain median took 1.5 % of such draws, this level 2 %


def test_nan_readings_never_crash_the_scan(confident_sample, cu_agent_model):
    bl = make_beamline(confident_sample, seed=0, flux=1e10)
    orig = bl.det.trigger
    n = {"i": 0}

    def flaky():
        st = orig()
        n["i"] += 1
        if n["i"] % 7 == 0:
            bl.det.mu.put(float("nan"))
        return st

    bl.det.trigger = flaky
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    RE = RunEngine({})
    RE.subscribe(agent)
    RE(bp.scan([bl.det], bl.mono, 8960, 9060, 70), **bl.md)
    rep = agent.finished[-1]
    assert rep["n_dropped"] == 10 and rep["n_points"] == 60 and agent.errors == 0


def _two_runs(sample) -> list[list[tuple[str, dict]]]:
    """The documents of two 30-point scans of ``sample``."""
    bl = make_beamline(sample, seed=0, flux=1e10)
    runs = []
    for _ in range(2):
        docs: list[tuple[str, dict]] = []
        RunEngine({})(bp.scan([bl.det], bl.mono, 8960, 9060, 30), lambda n, d, docs=docs: docs.append((n, d)), **bl.md)
        runs.append(docs)
    return runs


def test_mid_run_join_waits_for_next_run(confident_sample, cu_agent_model):
    runs = _two_runs(confident_sample)
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    for name, doc in runs[0][1:]:  # missed the start document
        agent(name, doc)
    assert agent.errors == 0 and not agent.finished
    for name, doc in runs[1]:
        agent(name, doc)
    assert agent.finished[-1]["n_points"] == 30


def test_served_router_skips_a_run_joined_mid_way(confident_sample, cu_agent_model, caplog):
    """What ``serve`` and ``replay`` route through: a plain RunRouter raises KeyError on a run whose
    start it never saw (a 0MQ subscription that took hold mid-run); SafeRunRouter skips that run."""
    from xanes_agent.agent.server import SafeRunRouter

    runs = _two_runs(confident_sample)
    late = list(runs[0][1:])
    late.insert(2, ("event_page", pack_event_page(*[d for n, d in late if n == "event"][:5])))
    with pytest.raises(KeyError):
        plain = RunRouter([agent_factory(ModelStore(models={"Cu": cu_agent_model}))])
        for name, doc in late:
            plain(name, doc)
    factory = agent_factory(ModelStore(models={"Cu": cu_agent_model}))
    router = SafeRunRouter([factory])
    with caplog.at_level("WARNING", logger="xanes_agent.agent.server"):
        for name, doc in late + runs[1]:
            router(name, doc)
    assert router.errors == 0 and router.joined_late == {runs[0][0][1]["uid"]}
    assert [r.message.count("joined mid-run") for r in caplog.records] == [1]  # one warning per run
    assert len(factory.agents) == 1 and factory.agents[0].finished[-1]["n_points"] == 30
    assert factory.agents[0].finished[-1]["raw_run_uid"] == runs[1][0][1]["uid"]
    router("descriptor", {"uid": "d"})  # malformed (no run_start): logged and counted, not raised
    assert router.errors == 1


def test_corrupt_model_and_internal_failure_never_abort_scan(confident_sample, cu_agent_model, tmp_path):
    (tmp_path / "Cu-pointwise-post_edge.npz").write_bytes(b"corrupt")
    agent = XANESAgent(ModelStore(tmp_path))
    bl = make_beamline(confident_sample, seed=0)
    RE = RunEngine({})
    RE.subscribe(agent)
    uids = RE(bp.scan([bl.det], bl.mono, 8960, 9060, 10), **bl.md)
    assert len(uids) == 1 and any("no usable model" in w for w in agent.warnings)
    assert "not a readable model bundle" in agent.models.errors["Cu"]

    broken = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    RE2 = RunEngine({})
    RE2.subscribe(broken)

    def boom(*a, **k):
        raise RuntimeError("model exploded")

    broken.models.predictor("Cu").update = boom
    assert len(RE2(bp.scan([bl.det], bl.mono, 8960, 9060, 10), **bl.md)) == 1
    assert broken.errors >= 10
    broken("event_page", {"garbage": True})  # malformed document: logged, not raised


def test_fused_fast_path_equals_sklearn():
    from xanes_agent.models.ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor
    from xanes_agent.models.packed import PackedForests, tree_std

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 25))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.where(np.nan_to_num(X[:, 0]) > 0.3, 6, np.where(np.nan_to_num(X[:, 1]) > 0, 5, 4))
    clf = SeedEnsembleClassifier(n_seeds=4, n_estimators=10).fit(X, y)
    reg = SeedEnsembleRegressor(n_seeds=4, n_estimators=10).fit(X, np.nan_to_num(X[:, 2]))
    fused = FusedForests.from_packed({"cn": PackedForests.from_sklearn(clf.estimators_),
                                      "d": PackedForests.from_sklearn(reg.estimators_)})
    Xt = rng.normal(size=(40, 25))
    Xt[rng.random(Xt.shape) < 0.25] = np.nan
    for engine in ["numpy"] + (["numba"] if HAVE_NUMBA else []):
        out = fused.per_property(Xt, engine)
        np.testing.assert_allclose(out["cn"], clf.predict_proba_per_seed(Xt), atol=1e-12)
        np.testing.assert_allclose(out["d"][:, :, 0], reg.predict_per_seed(Xt), atol=1e-12)
        np.testing.assert_allclose(out["cn"].mean(0), clf.predict_proba(Xt), atol=1e-12)
        # the trees' spread (the domain flag's second test): the std over every tree of every seed
        mean, sq = fused.per_property(Xt, engine, second=True)["d"]
        np.testing.assert_allclose(mean, out["d"], atol=1e-12)
        every_tree = np.stack([t.predict(Xt.astype(np.float32)) for f in reg.estimators_ for t in f.estimators_])
        np.testing.assert_allclose(tree_std(mean, sq)[:, 0], every_tree.std(axis=0), atol=1e-9)
        assert np.all(every_tree.std(axis=0) > 0)  # not a vacuous match
    # fewer trees than the walk keeps in flight (slots that never get a tree)
    few = SeedEnsembleRegressor(n_seeds=1, n_estimators=3).fit(X, np.nan_to_num(X[:, 2]))
    small = FusedForests.from_packed({"d": PackedForests.from_sklearn(few.estimators_)})
    np.testing.assert_allclose(small.per_property(Xt)["d"][:, :, 0], few.predict_per_seed(Xt), atol=1e-12)
    # the compiled walk used the 8-byte records; rows sitting exactly on split thresholds (as
    # float32, where rounding a float64 threshold decides the side) still go scikit-learn's way
    if HAVE_NUMBA:
        # one record per node, and after each leaf its outputs (one float64 record each)
        width = np.repeat(fused.group_width[fused.tree_group], np.diff(np.append(fused.roots, len(fused.left))))
        leaf = fused.left == np.arange(len(fused.left))
        assert fused.rec is not None and fused.rec.nbytes == 8 * (len(fused.left) + width[leaf].sum())
        t = clf.estimators_[0].estimators_[0].tree_
        inner = np.flatnonzero((t.children_left >= 0) & np.isfinite(t.threshold))  # (inf: a missing-value split)
        on = np.tile(np.nan_to_num(Xt[:1]), (len(inner), 1)).astype(np.float32)
        on[np.arange(len(inner)), t.feature[inner]] = t.threshold[inner].astype(np.float32)
        for E in (on, np.nextafter(on, np.float32(np.inf)), np.nextafter(on, np.float32(-np.inf))):
            E = E.astype(float)
            out = fused.per_property(E, "numba")
            np.testing.assert_allclose(out["cn"], clf.predict_proba_per_seed(E), atol=1e-12)
            np.testing.assert_allclose(out["d"][:, :, 0], reg.predict_per_seed(E), atol=1e-12)


def test_strategies_rank_as_documented(cu_agent_model):
    g = cu_agent_model.grid.energies
    covered = g < 10  # measured up to E0 + 10 eV
    preds = {"coordination_number": {"probability": 0.5}, "mean_nn_distance": {"std": 0.05}, "charge": {"std": 0.01}}
    eo = make_strategy("energy_order").propose(9000.0, g, covered, cu_agent_model, preds, n=2)
    assert eo[0].start <= 9000.0 + 10.0 < eo[0].stop and eo[1].start == pytest.approx(eo[0].stop)
    io = make_strategy("importance_only").propose(9000.0, g, covered, cu_agent_model, preds, n=20)
    assert io and all(p.stop > 9000.0 + 10.0 for p in io)
    assert [p.score for p in io] == sorted([p.score for p in io], reverse=True)
    iu = make_strategy("importance_uncertainty").propose(9000.0, g, covered, cu_agent_model, preds, n=3)
    assert len({p.uid for p in iu}) == 3 and iu[0].step == pytest.approx(g[1] - g[0])
    assert make_strategy("energy_order").propose(9000.0, g, np.ones_like(g, bool), cu_agent_model, preds) == []
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("greedy")


def test_adaptive_api_matches_suggestions_by_uid(confident_sample, cu_agent_model):
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    agent.begin("Cu")
    e = np.arange(8950, 9060, 0.5)
    bl = make_beamline(confident_sample, seed=0, flux=1e10)
    i0, it = bl.det.expected_counts(e)
    mu = np.log(i0 / it)
    window = (e < 8990) | (e > 9045)
    agent.tell(e[window], mu[window])
    agent.tell(e[(e >= 8990) & (e <= 9003)], mu[(e >= 8990) & (e <= 9003)])
    (s,) = agent.ask(1)
    assert s["uid"] in agent.run.pending
    sel = (e >= s["start"]) & (e <= s["stop"])
    agent.ingest(e[sel], mu[sel], uid=s["uid"])
    assert s["uid"] in agent.run.done and s["uid"] not in agent.run.pending
    assert agent.report()["edge_located"]


def test_proposals_go_coarse_then_fine(cu_agent_model):
    from xanes_agent.agent.strategies import make_strategy, propose_refining

    g = cu_agent_model.grid.energies
    e0 = 9000.0
    strat = make_strategy("importance_only")
    preds = {}
    # nothing measured in the window yet: coarse proposals (1.5 eV at most, both ends included)
    first = propose_refining(strat, e0, np.array([e0 - 30, e0 - 20]), cu_agent_model, preds, n=3)
    assert len(first) == 3 and all(np.diff(p.energies()).max() <= 1.5 + 1e-9 for p in first)
    # the window covered at 1.25 eV: now proposals at the grid's own spacing
    coarse = np.arange(e0 + g[0], e0 + g[-1] + 1.3, 1.25)
    fine = propose_refining(strat, e0, coarse, cu_agent_model, preds, n=2)
    assert fine and all(abs(p.step - (g[1] - g[0])) < 1e-9 for p in fine)
    # measured at grid density: nothing left to propose
    assert propose_refining(strat, e0, e0 + np.arange(g[0] - 1, g[-1] + 1, 0.5), cu_agent_model, preds) == []


def test_fuzzed_document_streams_never_escape_and_lose_no_valid_point(cu_agent_model):
    """Property-based (bounded for CI; benchmarks-size fuzzing is for later): a real run's documents
    with junk spliced in (None, lists, unknown names, broken events, NaN, booleans) never raise out
    of the router, and every valid reading of the run is counted."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from xanes_agent.agent import ModelStore, agent_factory
    from xanes_agent.agent.server import SafeRunRouter

    junk = st.one_of(
        st.tuples(st.just("event"), st.none()), st.tuples(st.none(), st.just({})),
        st.tuples(st.just("start"), st.lists(st.integers(), max_size=2)),
        st.tuples(st.text(max_size=8), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
        st.tuples(st.just("event"), st.fixed_dictionaries({"descriptor": st.just("d1"), "data": st.just({})})),
        st.tuples(st.just("event_page"), st.fixed_dictionaries(
            {"descriptor": st.just("d1"), "data": st.fixed_dictionaries(
                {"e": st.lists(st.floats(allow_nan=True), min_size=1, max_size=3),
                 "mu": st.lists(st.booleans(), min_size=1, max_size=3)})})),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, 40), junk), max_size=6), st.integers(5, 40))
    def check(inserts, n):
        energies = np.linspace(8950, 9060, n)
        docs = [("start", {"uid": "r1", "time": 0.0, "element": "Cu", "edge": "K",
                           "xas": {"energy_field": "e", "mu_field": "mu"}}),
                ("descriptor", {"uid": "d1", "run_start": "r1", "name": "primary", "time": 0.0,
                                "data_keys": {"e": {"dtype": "number", "shape": [], "source": "x", "units": "eV"},
                                              "mu": {"dtype": "number", "shape": [], "source": "x"}}})]
        docs += [("event", {"uid": f"e{i}", "descriptor": "d1", "seq_num": i + 1, "time": 0.0,
                            "data": {"e": float(x), "mu": float(1 / (1 + np.exp(-(x - 8985))))},
                            "timestamps": {"e": 0.0, "mu": 0.0}}) for i, x in enumerate(energies)]
        docs.append(("stop", {"uid": "s1", "run_start": "r1", "time": 0.0, "exit_status": "success"}))
        for pos, item in sorted(inserts, key=lambda t: t[0], reverse=True):
            docs.insert(min(2 + pos, len(docs) - 1), item)
        factory = agent_factory(ModelStore(models={"Cu": cu_agent_model}))
        router = SafeRunRouter([factory])
        for name, doc in docs:
            router(name, doc)  # must not raise
        reports = [r for a in factory.agents for r in a.finished]
        assert len(reports) == 1 and reports[0]["n_points"] == n

    check()


def test_model_store_names_its_choice_among_normalizations(cu_agent_model, tmp_path, caplog):
    """Bundles of two normalizations for one element: the post-edge one (the study's default) is
    taken and the choice is logged with the alternative; normalization= picks the other."""
    from xanes_agent.agent import ModelStore

    for norm in ("max", "post_edge"):
        cu_agent_model.save(tmp_path / f"Cu-pointwise-{norm}.npz")
    store = ModelStore(tmp_path)
    assert store.predictor("Cu") is not None and store.paths["Cu"].name == "Cu-pointwise-post_edge.npz"
    assert "several bundles (Cu-pointwise-max.npz, Cu-pointwise-post_edge.npz): using Cu-pointwise-post_edge.npz" \
        in caplog.text
    chosen = ModelStore(tmp_path, normalization="max")
    assert chosen.predictor("Cu") is not None and chosen.paths["Cu"].name == "Cu-pointwise-max.npz"
    assert ModelStore(tmp_path, normalization="area").predictor("Cu") is None  # none of that kind: said


def test_live_view_follows_the_agent_from_its_snapshots(confident_sample, cu_agent_model, tmp_path):
    """LiveAgentView subscribed to the agent redraws from agent.snapshot() during a real scan and
    once more at the stop; the snapshot outlives the run (the agent goes on to the next)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xanes_agent.agent.view import LiveAgentView, save_png

    bl = make_beamline(confident_sample, seed=0, flux=1e10, include_truth=True)
    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    view = LiveAgentView(agent, fig=plt.figure(figsize=(12, 7)), every=20)
    agent.subscribe(view)
    e0 = find_e0(confident_sample.energy, confident_sample.mu)
    RunEngine({})(bp.list_scan([bl.det], bl.mono, list(np.arange(e0 - 30, e0 + 60 + 1e-9, 0.5))), agent, **bl.md)
    n_events = len(agent.snapshot().history)
    assert view.n_drawn == n_events // 20 + 1  # every 20th update, and the final one at the stop
    titles = [ax.get_title() for ax in view.fig.axes]
    assert any(t.startswith("CN ") for t in titles) and "true CN" in " ".join(titles)
    snap = agent.snapshot()
    assert agent.in_run is None and snap.stop_reason == "success" and len(snap.energy) == 181
    assert save_png(snap, tmp_path / "view.png").stat().st_size > 10_000
    plt.close(view.fig)


def test_background_updates_coalesce_and_the_final_one_sees_every_reading(confident_sample, cu_agent_model):
    """A fly scan's stream (200 pages of 100 readings) into an agent that updates in a worker at
    most every 20 ms: the callbacks only append, updates are fewer than pages (coalesced), the
    final update counts every reading and equals what an inline agent gives on the same stream,
    and the worker is gone after the stop."""
    import threading

    from event_model import compose_run

    e0 = find_e0(confident_sample.energy, confident_sample.mu)
    rng = np.random.default_rng(1)
    e = rng.uniform(e0 - 30, e0 + 60, 20_000)
    mu = np.interp(e, confident_sample.energy, confident_sample.mu) + rng.normal(0, 0.002, e.size)
    bundle = compose_run(metadata={"element": "Cu", "edge": "K", "xas": {"energy_field": "E", "mu_field": "mu"}})
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "E": {"dtype": "number", "shape": [], "source": "mono", "units": "eV"},
        "mu": {"dtype": "number", "shape": [], "source": "det"}})
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for k in range(0, e.size, 100):
        docs.append(("event_page", desc.compose_event_page(
            data={"E": e[k:k + 100].tolist(), "mu": mu[k:k + 100].tolist()},
            timestamps={"E": [0.0] * 100, "mu": [0.0] * 100}, seq_num=list(range(k + 1, k + 101)))))
    docs.append(("stop", bundle.compose_stop()))
    results = {}
    for background in (True, False):
        out = []
        agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}), emit=lambda n, d, out=out: out.append((n, d)),
                           background=background, min_interval=0.02)
        for name, doc in docs:
            agent(name, doc)
        events = [d["data"] for n, d in out if n == "event"]
        results[background] = events[-1]
        assert agent.errors == 0 and agent.in_run is None
        assert events[-1]["n_readings"] == 20_000 and out[-1][0] == "stop"
        if background:
            assert len(events) < 200  # coalesced, not one per page
            assert not [t for t in threading.enumerate() if t.name.startswith("xanes-agent-")]
    a, b = results[True], results[False]
    assert a["cn"] == b["cn"] and a["distance"] == pytest.approx(b["distance"], abs=1e-12)
    assert a["n_points"] == b["n_points"] <= 901  # 0.1 eV bins over 90 eV
