"""A real FEFF10 run inside the test suite (one small cluster, seconds)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("feff10")

from xanes_agent.data import read_xmu  # noqa: E402
from xanes_agent.data.feff import (  # noqa: E402
    FALLBACK_SCF_MIXING,
    FAST_PARAMETERS,
    REDUCED_PARAMETERS,
    STAGE_MALLOC_ENV,
    _stage_environment,
    check_spectrum,
    feff_input,
    next_attempt,
    run_feff,
    with_scf,
)


def srtio3():
    """Cubic SrTiO3, Ti on site 1."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                     [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]])


def tiny(**changes):
    """FEFF10 settings for a cluster small enough to run in seconds (no SCF)."""
    return dataclasses.replace(FAST_PARAMETERS, **{"name": "test-tiny", "cluster_radius": 4.5, "fms_radius": 3.0,
                                                   "xanes_kmax": 3.2, **changes})


@pytest.fixture(scope="module")
def tio2_run(tmp_path_factory):
    inp = feff_input(srtio3(), 1, tiny(), title="SrTiO3 test")
    cache = tmp_path_factory.mktemp("feffcache")
    return inp, cache, run_feff(inp, cache)


def test_feff10_runs_and_is_cached(tio2_run):
    inp, cache, r = tio2_run
    assert r.ok, r.reason
    assert r.energy is not None and len(r.energy) > 40
    assert 4960 < r.energy[0] < 5000  # Ti K edge ~4966 eV
    assert np.all(np.isfinite(r.mu)) and r.mu.max() > 0.5
    again = run_feff(inp, cache)  # from the cache, no second FEFF run
    np.testing.assert_allclose(again.mu, r.mu, rtol=1e-4)
    assert again.seconds == r.seconds


def test_stage_processes_get_the_malloc_padding_and_a_user_setting_wins(monkeypatch):
    monkeypatch.delenv("MALLOC_TOP_PAD_", raising=False)
    probe = [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_TOP_PAD_'))"]
    with _stage_environment(STAGE_MALLOC_ENV):
        seen = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert seen == STAGE_MALLOC_ENV["MALLOC_TOP_PAD_"]
    assert "MALLOC_TOP_PAD_" not in os.environ  # restored: only FEFF's processes get it
    monkeypatch.setenv("MALLOC_TOP_PAD_", "131072")
    with _stage_environment(STAGE_MALLOC_ENV):
        assert os.environ["MALLOC_TOP_PAD_"] == "131072"
    assert os.environ["MALLOC_TOP_PAD_"] == "131072"


def test_feff_output_reads_back(tio2_run):
    _, cache, r = tio2_run
    s = read_xmu(cache / r.key / "xmu.dat")
    assert s.element == "Ti"
    np.testing.assert_allclose(s.mu, r.mu, rtol=1e-4)


def test_unphysical_spectra_are_rejected():
    e = np.linspace(0, 60, 100)
    good = 1 / (1 + np.exp(-(e - 20)))
    assert check_spectrum(e, good) == ""
    assert "non-finite" in check_spectrum(e, np.where(e > 30, np.nan, good))
    assert "negative" in check_spectrum(e, good - 0.3)
    assert "no absorption edge" in check_spectrum(e, np.ones_like(e))
    spiky = good.copy()
    spiky[5] = 3.0
    assert "pre-edge" in check_spectrum(e, spiky)


def test_a_two_step_edge_is_not_an_anomalous_pre_edge_peak():
    from xanes_agent.foundation.normalization import steepest_rise

    e = np.linspace(0, 60, 241)
    # a first step to 0.95 of the post-edge level, then a sharper white line: the steepest rise
    # is the second step, so the first lies >5 eV below it above 90 % of the post-edge level
    two_step = 0.95 / (1 + np.exp(-(e - 12))) + np.exp(-(((e - 25) / 2) ** 2)) + 0.05 / (1 + np.exp(-(e - 24)))
    assert steepest_rise(e, two_step) > 20
    assert check_spectrum(e, two_step) == ""
    # the same first feature falling back to the baseline before the edge is an artefact
    artefact = np.where(e < 18, 0.95 * np.exp(-(((e - 12) / 3) ** 2)), two_step)
    assert "anomalous pre-edge peak" in check_spectrum(e, artefact)


def test_cached_results_are_judged_again_with_todays_checks(tio2_run, tmp_path):
    import json
    import shutil

    inp, cache, r = tio2_run
    assert r.ok
    copy = tmp_path / r.key
    shutil.copytree(cache / r.key, copy)
    record = json.loads((copy / "result.json").read_text())
    record.update(ok=False, reason="anomalous pre-edge peak (an older, stricter check)")
    (copy / "result.json").write_text(json.dumps(record))
    again = run_feff(inp, tmp_path)
    assert again.ok and again.reason == "" and again.seconds == r.seconds  # not run again


def test_only_feffs_own_outcomes_are_kept(tio2_run, tmp_path):
    """A failure outside FEFF (this package's or the machine's) is reported but never cached; one
    cached so before 2026-11-29 is run again unless FEFF had written its spectrum (then today's
    checks judge that); FEFF's own crash under the current retry policy stands."""
    import json
    import shutil

    from xanes_agent.data.feff import INTERNAL_ERROR, RETRY_POLICY

    inp, cache, r = tio2_run
    bad = run_feff(inp, tmp_path / "typo", stage_timeout="soon")  # a caller's error, not FEFF's
    assert not bad.ok and bad.reason.startswith(INTERNAL_ERROR) and "TypeError" in bad.reason
    assert not (tmp_path / "typo" / bad.key / "result.json").exists()

    ours = "FEFF failed: ModuleNotFoundError: No module named 'xanes_agent.models.normalization'"
    feffs = "FEFF failed: FeffPipelineError: stage 'pot' failed (exit code 1)"
    for name, reason, spectrum_kept, runs_again in [("ours", ours, False, True), ("ours-after", ours, True, False),
                                                   ("feffs", feffs, False, False)]:
        copy = tmp_path / name
        shutil.copytree(cache / r.key, copy / r.key)
        record = json.loads((copy / r.key / "result.json").read_text())
        record.update(ok=False, reason=reason, seconds=-1.0, retry_policy=RETRY_POLICY)
        (copy / r.key / "result.json").write_text(json.dumps(record))
        if not spectrum_kept:
            (copy / r.key / "xmu.dat").unlink()  # the error came before FEFF wrote it
        again = run_feff(inp, copy)
        assert (again.seconds > 0) == runs_again, name
        if runs_again:
            assert again.ok and json.loads((copy / r.key / "result.json").read_text())["ok"]
        elif spectrum_kept:
            assert again.ok and again.reason == ""  # judged again from the kept spectrum
        else:
            assert not again.ok and again.reason == reason


def test_a_run_stopped_from_outside_feff_is_not_kept(tio2_run, tmp_path):
    """A stage past its wall-clock limit (a niced build on a loaded machine) or killed by a signal
    (a build being stopped) is not FEFF's answer: reported as not FEFF's failure, never cached, and
    one cached as a crash before 2026-12-01 is run again; a segfault stays FEFF's own crash."""
    from xanes_agent.data.feff import INTERNAL_ERROR, RETRY_POLICY, outcome_stands

    inp, _, _ = tio2_run
    cut = run_feff(inp, tmp_path, stage_timeout=0.001)  # the real pipeline, stopped by its time limit
    assert not cut.ok and cut.reason.startswith(INTERNAL_ERROR) and "timed out" in cut.reason
    assert not (tmp_path / cut.key / "result.json").exists()
    again = run_feff(inp, tmp_path)
    assert again.ok and json.loads((tmp_path / cut.key / "result.json").read_text())["ok"]

    stage = "FEFF failed: FeffPipelineError: stage 'pot' failed: "
    for reason, stands in [(stage + "timed out after 900s", False),
                           (stage + "worker exited with signal: 15 (SIGTERM)", False),
                           (stage + "worker exited with signal: 9 (SIGKILL)", False),
                           (stage + "worker exited with signal: 11 (SIGSEGV)", True),
                           (stage + "worker exited with exit code: 1", True)]:
        assert outcome_stands({"reason": reason, "retry_policy": RETRY_POLICY}) == stands, reason


def test_a_recorded_retry_policy_that_is_not_an_integer_counts_as_none():
    """Failure records come from files (a library's meta, the cache): a malformed retry policy must
    not stop a build; the failure is tried again, as one recorded before retry policies."""
    from xanes_agent.data.feff import RETRY_POLICY, outcome_stands

    crash = "FEFF failed: FeffPipelineError: stage 'pot' failed (exit code 1)"
    assert outcome_stands({"reason": crash, "retry_policy": RETRY_POLICY})
    for bad in (str(RETRY_POLICY), float(RETRY_POLICY), None, True, [RETRY_POLICY]):
        assert not outcome_stands({"reason": crash, "retry_policy": bad})
    assert not outcome_stands({"reason": crash})


def test_the_rpa_set_screens_the_core_hole(tio2_run, tmp_path):
    """``reduced-v2-rpa`` differs from the library's set only in the core-hole card, and FEFF10
    computes that screened core hole: the same tiny cluster gives another spectrum."""
    from xanes_agent.data.feff import REDUCED_RPA_PARAMETERS, REDUCED_V2_PARAMETERS

    rpa = dataclasses.asdict(REDUCED_RPA_PARAMETERS)
    fsr = dataclasses.asdict(REDUCED_V2_PARAMETERS)
    assert {k for k in rpa if rpa[k] != fsr[k]} == {"name", "corehole", "spectra_as", "id_suffix", "charge_label"}
    assert rpa["spectra_as"] == ()  # FSR spectra are not taken for RPA ones
    # the ground-state SCF's charge is another quantity than the FSR set's, and named so
    assert rpa["charge_label"] == "feff_ground_charge_transfer" and fsr["charge_label"] == "feff_charge_transfer"
    inp, _, fsr_run = tio2_run
    rpa_inp = feff_input(srtio3(), 1, tiny(name="test-tiny-rpa", corehole="RPA"), title="SrTiO3 test")
    assert "COREHOLE RPA" in rpa_inp and "COREHOLE FSR" in inp
    r = run_feff(rpa_inp, tmp_path)
    assert r.ok, r.reason
    assert len(r.mu) == len(fsr_run.mu)
    assert np.max(np.abs(r.mu / r.mu[-1] - fsr_run.mu / fsr_run.mu[-1])) > 0.05


def test_bad_input_is_recorded_not_raised(tmp_path):
    r = run_feff("TITLE broken\nPOTENTIALS\n 0 29 Cu\nATOMS\n 0 0 zero 0 Cu\nEND\n", tmp_path)
    assert not r.ok and r.reason
    assert (tmp_path / r.key / "result.json").exists()


def test_simulator_sample_from_cif_computed_on_demand(tmp_path):
    from xanes_agent.simulator import make_beamline, sample_from_structure

    cif = tmp_path / "SrTiO3.cif"
    srtio3().to(filename=str(cif))
    s = sample_from_structure(cif, "Ti", cache_dir=tmp_path / "cache", params=tiny())
    assert s.labels["coordination_number"] == 6 and s.labels["mean_nn_distance"] == pytest.approx(1.9525, abs=1e-3)
    assert len(list((tmp_path / "cache").iterdir())) == 1  # cached for the next call
    bl = make_beamline(s, seed=0)
    bl.mono.set(float(s.energy[len(s.energy) // 2])).wait()
    bl.det.trigger()
    assert np.isfinite(bl.det.mu.get())


def test_scf_mixing_is_rewritten_on_the_scf_card_only():
    inp = "TITLE SCF 1 2 3 4 5\nSCF 3.0 0 10 0.2 1\nFMS 4.5 0\n"
    assert with_scf(inp, mixing=0.05) == "TITLE SCF 1 2 3 4 5\nSCF 3.0 0 10 0.05 1\nFMS 4.5 0\n"
    assert with_scf(inp, iterations=40) == "TITLE SCF 1 2 3 4 5\nSCF 3.0 0 40 0.2 1\nFMS 4.5 0\n"
    assert with_scf(inp, iterations=40, mixing=0.1) == "TITLE SCF 1 2 3 4 5\nSCF 3.0 0 40 0.1 1\nFMS 4.5 0\n"
    with pytest.raises(ValueError, match="no SCF card"):
        with_scf("FMS 4.5 0\n", mixing=0.05)


def test_bad_counts_scf_is_rescued_with_gentler_mixing(tmp_path):
    """Ideal wurtzite VO: FEFF's SCF stops on "Found bad counts" with the default mixing 0.2 (as
    for every wurtzite V site of the library builds); the second try at 0.05 gives a spectrum."""
    from xanes_agent.data.structures import FAMILY_BY_NAME, build

    g = build(FAMILY_BY_NAME["wurtzite"], "V", seed=0)
    params = dataclasses.replace(REDUCED_PARAMETERS, name="test-tiny-scf", cluster_radius=4.5, fms_radius=3.0,
                                 xanes_kmax=3.2)
    inp = feff_input(g.structure, g.absorber_index, params, title="wurtzite VO test")
    assert "SCF 3.0 0 10 0.2 1" in inp
    r = run_feff(inp, tmp_path)
    assert r.ok, r.reason
    assert r.scf_mixing_fallback == FALLBACK_SCF_MIXING
    assert "0.05 1" in (tmp_path / r.key / "feff_fallback.inp").read_text()
    again = run_feff(inp, tmp_path)  # cached with its fallback recorded
    assert again.scf_mixing_fallback == FALLBACK_SCF_MIXING and again.seconds == r.seconds


def test_after_a_failed_fallback_feff_is_not_run_a_third_time():
    """The retry rule: bad counts get the gentler mixing once, any other crash one plain retry, and a
    failed fallback is final (a plain retry after it rescued none of 120 sites)."""
    failed = "FEFF failed: FeffStageError: pot exited"
    assert next_attempt("", False, False, False) == "stop"  # a spectrum
    assert next_attempt("unphysical: negative mu", False, False, False) == "stop"
    assert next_attempt("FEFF rejected the input: bad card", False, False, False) == "stop"
    assert next_attempt(failed, True, False, False) == "fallback"
    assert next_attempt(failed, True, True, False) == "stop"  # the fallback failed on bad counts again
    assert next_attempt(failed, False, True, False) == "stop"  # ... or otherwise
    assert next_attempt(failed, False, False, False) == "retry"
    assert next_attempt(failed, False, False, True) == "stop"
    assert next_attempt(failed, True, False, True) == "fallback"  # a retry that then hit bad counts
    assert next_attempt("not FEFF's failure: OSError: disk full", False, False, False) == "stop"


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_stopped_build_leaves_no_workers_or_feff_running(tmp_path, how):
    """`kill -9` or Ctrl-C (SIGINT) of a running build-library: its pool workers and their FEFF
    processes end too (they used to run on, or the build to wait for every queued site)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    workers: set[int] = set()
    feff: set[int] = set()
    build = subprocess.Popen(
        # --no-resume: the bundled library holds these sites, and this build must run FEFF
        [sys.executable, "-m", "xanes_agent", "build-library", "--per-element", "2", "--elements", "Fe", "--no-omnixas",
         "--no-resume", "--workers", "2", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "lib.npz")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # as typed at a terminal: a test run started in the background inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until both workers run FEFF (a grandchild each)
            workers = _children(build.pid)
            feff = set().union(*(_children(w) for w in workers)) if workers else set()
            if len(workers) >= 2 and len(feff) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the build never started FEFF in two workers")
        build.send_signal(getattr(signal, how))
        assert build.wait(timeout=20) == (-9 if how == "SIGKILL" else 130)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in workers | feff):
            time.sleep(0.2)
        assert not [p for p in workers | feff if _alive(p)]
    finally:
        if build.poll() is None:
            build.kill()
        for p in workers | feff:  # a failing run must not leave FEFF running on the machine
            if _alive(p):
                os.kill(p, signal.SIGKILL)
