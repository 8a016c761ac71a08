"""The agent on runs that record detector signals and name the absorber another way, and stock
bluesky callbacks on the agent's own output."""

from __future__ import annotations

import subprocess
import sys
import time

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from event_model import compose_run

from xanes_agent.agent import ModelStore, XANESAgent
from xanes_agent.simulator import make_beamline, sample_from_library

XDI_MD = {"XDI": {"Element": {"symbol": "Cu", "edge": "K"}}, "sample": {"id": "pellet-7"}}


@pytest.fixture
def sample(bundled_library):
    return sample_from_library(bundled_library, element="Cu", split="test", rng=5, coordination_number=4.0)


def _scan(sample, md, omit_mu: bool, seed: int = 0, **agent_kw):
    bl = make_beamline(sample, seed=seed, flux=1e9)
    if omit_mu:  # a transmission detector as beamlines have it: two ion chambers, no mu field
        bl.det.mu.kind = "omitted"
    agent = XANESAgent(ModelStore(models=agent_kw.pop("models")), **agent_kw)
    RE = RunEngine({})
    RE.subscribe(agent)
    RE(bp.scan([bl.det], bl.mono, 8950, 9060, 111), **md)
    return agent


def _conventions(agent: XANESAgent) -> list[str]:
    """The agent's warnings about how each run was recorded. The domain flag's warning speaks of the
    spectrum against the model instead (a test spectrum near the threshold falls on either side of
    it as the library grows: the FEFF 9 one below did in session 30): it comes at most once a run,
    and once for a run that ends out of domain; it is set aside here."""
    said = list(agent.warnings)
    for run in agent.finished:
        flag = [w for w in said if w.startswith(f"run {run['raw_run_uid']}: out of domain: ")]
        assert len(flag) <= 1 and (run["in_domain"] or len(flag) == 1), (run["domain_score"], flag)
        said = [w for w in said if w not in flag]
    return said


def test_transmission_chambers_and_an_xdi_style_start_document(sample, cu_agent_model):
    """I0 and It only, element under XDI.Element.symbol: the agent forms ln(I0/It) and finds Cu,
    says both once, and predicts exactly what it predicts from the same counts' mu field."""
    models = {"Cu": cu_agent_model}
    plain = _scan(sample, make_beamline(sample).md, omit_mu=False, models=models)
    other = _scan(sample, XDI_MD, omit_mu=True, models=models)
    assert _conventions(plain) == []
    uid = other.finished[0]["raw_run_uid"]
    assert _conventions(other) == [
        f"run {uid}: element Cu taken from the start document's 'XDI.Element.symbol'",
        f"run {uid}: edge K taken from the start document's 'XDI.Element.edge'",
        f"run {uid}: transmission ln(det_i0/det_it) from the field names (name the fields in xas.* of the start "
        "document to be sure)",
    ]
    a, b = plain.finished[0], other.finished[0]
    assert a["n_points"] == b["n_points"] == 111
    for name, p in a["predictions"].items():
        assert b["predictions"][name]["prediction"] == p["prediction"]


def test_named_detector_fields_and_flags_override_and_say_nothing(sample, cu_agent_model):
    md = {**XDI_MD, "element": "Cu", "edge": "K",
          "xas": {"energy_field": "mono_energy", "i0_field": "det_i0", "it_field": "det_it"}}
    agent = _scan(sample, md, omit_mu=True, models={"Cu": cu_agent_model})
    assert _conventions(agent) == [] and agent.finished[0]["n_points"] == 111
    # a flag names what the metadata does not
    agent = _scan(sample, {"purpose": "no metadata at all"}, omit_mu=True, models={"Cu": cu_agent_model},
                  element="Cu", i0_field="det_i0", it_field="det_it")
    uid = agent.finished[0]["raw_run_uid"]
    assert _conventions(agent) == [f"run {uid}: no edge in the start document: K edge assumed"]
    assert agent.finished[0]["n_points"] == 111


def test_a_run_the_agent_cannot_use_says_why_once(sample, cu_agent_model):
    agent = _scan(sample, {"purpose": "no element anywhere"}, omit_mu=True, models={"Cu": cu_agent_model})
    assert len(agent.warnings) == 1 and "names no element (looked under element, XDI.Element.symbol" in \
           agent.warnings[0] and agent.finished == []
    agent = _scan(sample, {"element": "Cu", "edge": "K", "xas": {"it_field": "nope"}}, omit_mu=True,
                  models={"Cu": cu_agent_model})
    assert len(agent.warnings) == 1, agent.warnings
    assert "It field 'nope' not found" in agent.warnings[0] and "no predictions for this run" in agent.warnings[0]


def test_fluorescence_events_from_documents(cu_agent_model, bundled_library):
    """If/I0 from an event stream composed with event-model (no mu field, no units on energy)."""
    sub = bundled_library.where(element="Cu", source="feff10-project", split="test")
    e, mu = sub.energy[0], sub.mu[0]
    ok = np.isfinite(e) & np.isfinite(mu)
    e, mu = e[ok], mu[ok]
    i0 = np.full(len(e), 2e5)
    iff = 0.05 * mu * i0
    num = {"dtype": "number", "shape": [], "source": "sim"}

    def feed(agent, metadata, fields):
        run = compose_run(metadata=metadata)
        agent("start", run.start_doc)
        desc = run.compose_descriptor(name="primary", data_keys={k: num for k in fields})
        agent("descriptor", desc.descriptor_doc)
        agent("event_page", desc.compose_event_page(data={k: v.tolist() for k, v in fields.items()},
                                                    timestamps={k: [0.0] * len(e) for k in fields},
                                                    seq_num=list(range(1, len(e) + 1))))
        agent("stop", run.compose_stop())
        return run.start_doc["uid"]

    agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    # keys with dots are not allowed in start documents: nested, in lower case
    uid = feed(agent, {"xdi": {"element": {"symbol": "cu", "edge": "k"}}}, {"energy": e, "I0": i0, "IFluor": iff})
    assert _conventions(agent) == [f"run {uid}: element Cu taken from the start document's 'XDI.Element.symbol'",
                                   f"run {uid}: edge K taken from the start document's 'XDI.Element.edge'",
                                   f"run {uid}: energy taken from the field 'energy' (no units declared: eV "
                                   "assumed), fluorescence IFluor/I0 from the field names (name the fields in xas.* "
                                   "of the start document to be sure)"]
    # the same ratio handed over as a named mu field: the same run, the same predictions
    reference = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
    feed(reference, {"element": "Cu", "edge": "K", "xas": {"energy_field": "energy", "mu_field": "mu"}},
         {"energy": e, "mu": iff / i0})
    assert _conventions(reference) == []
    got, want = agent.finished[0]["predictions"], reference.finished[0]["predictions"]
    assert got.keys() == want.keys()
    for name, p in want.items():
        assert got[name]["prediction"] == p["prediction"], name


def test_stock_callbacks_work_on_the_agents_predictions(sample, cu_agent_model, capsys, caplog):
    """LiveTable and BestEffortCallback need plan_type/scan_id/plan_name on a start document."""
    from bluesky.callbacks import LiveTable
    from bluesky.callbacks.best_effort import BestEffortCallback

    table = LiveTable(["cn", "cn_probability", "distance", "distance_std", "charge"], stream_name="predictions")
    bec = BestEffortCallback()
    bec.disable_plots()
    errors = []

    def guarded(cb):
        def call(name, doc):
            try:
                cb(name, doc)
            except Exception as exc:  # noqa: BLE001 - the agent would swallow it; the test must see it
                errors.append(exc)
        return call

    agent = _scan(sample, make_beamline(sample).md, omit_mu=False, models={"Cu": cu_agent_model},
                  emit=[guarded(table), guarded(bec)])
    assert errors == [] and agent.errors == 0
    # bluesky's callbacks swallow their own exceptions into an ERROR log line: none may be there
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    out = capsys.readouterr().out
    assert "cn_probability |" in out and "|       111 |" in out  # LiveTable's rows, one per update
    assert "callback xanes_agent_predictions" in out and "(scan num: 1)" in out  # its closing line
    assert "Transient Scan ID: 1" in out and "New stream: 'predictions'" in out  # BestEffortCallback


def test_serve_end_to_end_on_runs_in_another_convention(sample, cu_agent_model, tmp_path, zmq_proxy,
                                                        scan_until_served):
    """A real proxy, ``serve`` in its own process, a RunEngine publishing a run that records only
    I0/It and names the element XDI's way: the agent reports the run and what it guessed."""
    from bluesky.callbacks.zmq import Publisher

    from xanes_agent.agent.wire import pack

    models = tmp_path / "models"
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    in_addr, out_addr = zmq_proxy
    proc = subprocess.Popen([sys.executable, "-m", "xanes_agent", "serve", "--subscribe", out_addr,
                             "--models", str(models), "--max-runs", "1", "--intervals", "same-code"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    publisher = Publisher(in_addr, serializer=pack)
    try:
        assert "listening" in proc.stdout.readline()
        time.sleep(1.0)  # 0MQ slow joiner
        bl = make_beamline(sample, seed=0, flux=1e9)
        bl.det.mu.kind = "omitted"
        RE = RunEngine({})
        RE.subscribe(publisher)
        out = scan_until_served(RE, lambda: bp.scan([bl.det], bl.mono, 8950, 9060, 90), XDI_MD, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        publisher.close()  # an open socket would hang the 0MQ context's teardown at exit
    assert proc.returncode == 0, out
    assert "90 points" in out and "CN" in out, out
    assert out.count("taken from the start document's 'XDI.Element.symbol'") == 1, out
    assert out.count("transmission ln(det_i0/det_it) from the field names") == 1, out
