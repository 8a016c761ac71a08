"""The simulated beamline driven by a real RunEngine and stock plans."""

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from event_model import schema_validators
from ophyd.utils import LimitError

from xanes_agent.data import read_xmu
from xanes_agent.documents import JSONLWriter, read_jsonl
from xanes_agent.foundation.normalization import find_e0
from xanes_agent.simulator import Sample, make_beamline


@pytest.fixture
def sample(cu_xmu):
    s = read_xmu(cu_xmu)
    return Sample("mp-1036393/15", "Cu", "K", s.energy, s.mu, labels={"coordination_number": 6.0})


def _validate(docs):
    for name, doc in docs:
        schema_validators[__import__("event_model").DocumentNames[name]].validate(doc)


def test_scan_documents_validate_and_follow_spectrum(sample):
    bl = make_beamline(sample, seed=3, flux=1e6, dwell_time=1.0)
    e0 = find_e0(sample.energy, sample.mu)
    RE = RunEngine({})
    docs = []
    RE(bp.scan([bl.det], bl.mono, e0 - 20, e0 + 50, 141), lambda n, d: docs.append((n, d)), **bl.md)
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 141
    _validate(docs)
    start = docs[0][1]
    assert start["element"] == "Cu" and start["xas"]["energy_field"] == "mono_energy"
    assert "sample_truth" not in start  # only on request
    desc = docs[1][1]
    assert desc["data_keys"]["mono_energy"]["units"] == "eV"
    assert desc["data_keys"]["det_i0"]["units"] == "counts"
    ev = [d for n, d in docs if n == "event"]
    e = np.array([d["data"]["mono_energy"] for d in ev])
    mu = np.array([d["data"]["det_mu"] for d in ev])
    expected = bl.det.background + bl.det.edge_step * sample.mu_at(e)
    # noise model: sigma(mu) ~ sqrt(1/it + 1/i0); 6 sigma bound, and unbiased on average
    i0, it = bl.det.expected_counts(e)
    sigma = np.sqrt(1 / it + 1 / i0)
    assert np.all(np.abs(mu - expected) < 6 * sigma)
    assert abs(np.mean((mu - expected) / sigma)) < 0.5


def test_stock_plans_and_limits(sample):
    bl = make_beamline(sample, seed=0)
    RE = RunEngine({})
    e = 8990.0
    RE(bp.list_scan([bl.det], bl.mono, [e, e + 5, e + 10]))
    RE(bp.rel_scan([bl.det], bl.mono, -2, 2, 5))
    assert bl.mono.position == pytest.approx(e + 10)  # rel_scan returns to the start
    with pytest.raises(LimitError):
        bl.mono.set(1000.0)


def test_outside_range_is_finite(sample):
    bl = make_beamline(sample, seed=0)
    for e in (bl.mono.limits[0], sample.energy[0] - 100, sample.energy[-1] + 300, bl.mono.limits[1]):
        bl.mono.set(e).wait()
        bl.det.trigger()
        assert np.isfinite(bl.det.mu.get())
    assert sample.mu_at(sample.energy[-1] + 300) == pytest.approx(np.mean(sample.mu[-5:]))


@pytest.mark.parametrize("dwell", [0.01, 0.1, 1.0])
def test_poisson_noise_scales_with_dwell(sample, dwell):
    bl = make_beamline(sample, seed=42, flux=1e5, dwell_time=dwell)
    bl.mono.set(9000.0).wait()
    i0 = []
    for _ in range(400):
        bl.det.trigger()
        i0.append(bl.det.i0.get())
    i0 = np.array(i0)
    expected = 1e5 * dwell
    assert i0.mean() == pytest.approx(expected, rel=0.02)
    # Poisson: variance equals the mean (tolerance ~4 standard errors of a 400-sample variance)
    assert i0.var(ddof=1) / i0.mean() == pytest.approx(1.0, abs=4 * np.sqrt(2 / 399))


def test_seeded_noise_is_reproducible(sample):
    vals = []
    for _ in range(2):
        bl = make_beamline(sample, seed=7)
        bl.mono.set(9000.0).wait()
        bl.det.trigger()
        vals.append(bl.det.mu.get())
    assert vals[0] == vals[1]


def test_jsonl_replays_same_spectrum(sample, tmp_path):
    bl = make_beamline(sample, seed=5, include_truth=True)
    RE = RunEngine({})
    path = tmp_path / "run.jsonl"
    writer = JSONLWriter(path)
    live = []
    RE(bp.scan([bl.det], bl.mono, 8980, 9040, 61), [writer, lambda n, d: live.append((n, d))], **bl.md)
    writer.close()
    replay = list(read_jsonl(path))
    assert [n for n, _ in replay] == [n for n, _ in live]
    mu_live = [d["data"]["det_mu"] for n, d in live if n == "event"]
    mu_back = [d["data"]["det_mu"] for n, d in replay if n == "event"]
    np.testing.assert_allclose(mu_back, mu_live)
    assert replay[0][1]["sample_truth"]["coordination_number"] == 6.0
    _validate(replay)


def test_simulate_cli(tmp_path, cu_xmu):
    from xanes_agent.cli import main

    out, png = tmp_path / "run.jsonl", tmp_path / "run.png"
    assert main(["simulate", "--file", str(cu_xmu), "--element", "Cu", "--points", "30", "--out", str(out),
                 "--png", str(png)]) == 0
    assert sum(1 for n, _ in read_jsonl(out) if n == "event") == 30
    assert png.stat().st_size > 10_000
    # run again into the same file: it holds that run only (it used to gain a second one)
    assert main(["simulate", "--file", str(cu_xmu), "--element", "Cu", "--points", "20", "--out", str(out)]) == 0
    docs = list(read_jsonl(out))
    assert [n for n, _ in docs].count("start") == 1 and sum(1 for n, _ in docs if n == "event") == 20


def test_jsonl_writer_starts_afresh_unless_told_to_append(tmp_path):
    path = tmp_path / "log.jsonl"
    for append in (False, False, True):
        w = JSONLWriter(path, append=append)
        w("start", {"uid": f"u{append}", "time": 0.0})
        w.close()
    assert [d["uid"] for _, d in read_jsonl(path)] == ["uFalse", "uTrue"]


def test_below_a_computed_spectrum_is_zero_below_a_measured_one_its_first_value(sample, tmp_path):
    """What the models are trained with (features.extend_below_fermi): no absorption below the Fermi
    level of a computed spectrum; a measured one's pre-edge goes on flat."""
    from xanes_agent.simulator.samples import sample_from_file

    assert sample.computed and sample.mu_at(sample.energy[0] - 10.0) == 0.0
    path = tmp_path / "measured.txt"
    np.savetxt(path, np.column_stack([sample.energy, sample.mu + 0.2]))
    measured = sample_from_file(path, element="Cu")
    assert not measured.computed
    assert measured.mu_at(sample.energy[0] - 10.0) == pytest.approx(sample.mu[0] + 0.2)
