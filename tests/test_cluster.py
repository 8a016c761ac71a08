"""Library builds and training on a real Dask cluster (a LocalCluster of 2 worker processes on loopback)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

ELEMENTS = ["Ti", "Cu"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    with Client(cluster) as c:
        yield c
    cluster.close()


def _fast():
    from xanes_agent.data.feff import FAST_PARAMETERS

    return FAST_PARAMETERS  # the cheapest real FEFF10 set: a few seconds a site


def _build(cache: Path, client=None, per_element: int = 1):
    from xanes_agent.data.library import compute_project_spectra

    return compute_project_spectra(ELEMENTS, per_element, cache / "feff", workers=2, params=_fast(),
                                   progress=False, client=client)


def _by_id(spectra):
    return {s.id: s for s in spectra}


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for gid, s in a.items():
        t = b[gid]
        np.testing.assert_array_equal(s.energy, t.energy)
        np.testing.assert_array_equal(s.mu, t.mu)
        assert s.labels == pytest.approx(t.labels, nan_ok=True)
        drop = {"feff_seconds"}  # wall time of the run, not a property of the spectrum
        assert {k: v for k, v in s.provenance.items() if k not in drop} == \
               {k: v for k, v in t.provenance.items() if k not in drop}


def _entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in (cache / "feff").glob("*/result.json"))


def test_a_build_on_a_cluster_equals_the_local_build_and_lands_in_the_cache(client, tmp_path):
    local, local_failed = _build(tmp_path / "local")
    remote, remote_failed = _build(tmp_path / "cluster", client)
    assert len(local) == 2 and not local_failed and not remote_failed
    _assert_same(_by_id(local), _by_id(remote))
    # every finished job was streamed into the client's cache: a cache-only pass has them all
    from xanes_agent.data.library import compute_project_spectra

    again, _ = compute_project_spectra(ELEMENTS, 1, tmp_path / "cluster" / "feff", params=_fast(), progress=False,
                                       cached_only=True)
    _assert_same(_by_id(remote), _by_id(again))
    assert [e.name for e in _entries(tmp_path / "cluster")] == [e.name for e in _entries(tmp_path / "local")]
    for e in _entries(tmp_path / "cluster"):
        assert sorted(p.name for p in e.iterdir()) == ["feff.inp", "result.json", "xmu.dat"]
    # a second cluster build finds everything in the cache and submits nothing
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        resumed, _ = _build(tmp_path / "cluster", client)
    _assert_same(_by_id(remote), _by_id(resumed))
    assert ts.data == []


def test_a_worker_killed_mid_build_loses_and_duplicates_nothing(client, tmp_path):
    """SIGKILL one worker process while it runs FEFF: the scheduler runs its task elsewhere (the
    nanny restarts the worker); every site ends in the library once and in the cache once."""
    killed: dict[str, int] = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = {w: ts for w, ts in client.processing().items() if ts}
            if busy:
                time.sleep(1.0)  # into the FEFF run
                addr = next(iter(busy))
                pid = client.run(os.getpid, workers=[addr])[addr]
                os.kill(pid, signal.SIGKILL)
                killed[addr] = pid
            time.sleep(0.1)

    t = threading.Thread(target=kill_a_busy_worker)
    t.start()
    spectra, failures = _build(tmp_path / "cluster", client, per_element=2)
    t.join()
    assert killed, "no worker was seen running a task"
    assert not failures
    ids = [s.id for s in spectra]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert len(_entries(tmp_path / "cluster")) == 4
    assert not list((tmp_path / "cluster").rglob("*.part"))  # no half-written file
    local, _ = _build(tmp_path / "local", per_element=2)
    _assert_same(_by_id(local), _by_id(spectra))
    client.wait_for_workers(2, timeout=60)  # the nanny brought the killed worker back


def test_training_through_the_cluster_gives_the_same_forests_bit_for_bit(client, bundled_library):
    from xanes_agent.cluster import joblib_on
    from xanes_agent.models.training import TrainConfig, train_element

    cfg = TrainConfig(n_seeds=3, n_estimators=8, calibration_folds=2, calibration_seeds=2)
    from distributed import get_task_stream

    local = train_element(bundled_library, "Ti", cfg, progress=False)
    with get_task_stream(client) as ts, joblib_on(client):
        remote = train_element(bundled_library, "Ti", cfg, progress=False)
    # the workers fitted the forests: 3 properties x (3 seeds + 2 folds x 2 seeds), one task each at least
    assert len({t["worker"] for t in ts.data}) == 2 and len(ts.data) >= 3 * (3 + 2 * 2)
    assert sorted(local.properties) == sorted(remote.properties)
    for name, pm in local.properties.items():
        qm = remote.properties[name]
        for field in pm.packed.__dataclass_fields__:
            np.testing.assert_array_equal(np.asarray(getattr(pm.packed, field)),
                                          np.asarray(getattr(qm.packed, field)), err_msg=f"{name}.{field}")
        np.testing.assert_array_equal(pm.importances, qm.importances)
        assert pm.metrics == qm.metrics
    import json

    assert json.dumps(local.calibration, sort_keys=True, default=str) == \
           json.dumps(remote.calibration, sort_keys=True, default=str)


def test_the_cli_trains_through_a_scheduler_and_names_a_missing_one(client, tmp_path, capsys):
    from xanes_agent.cli import main

    addr = client.scheduler.address
    rc = main(["train", "--elements", "Ti", "--seeds", "2", "--trees", "5", "--calibration-folds", "0",
               "--quiet", "--out", str(tmp_path), "--scheduler", addr])
    out = capsys.readouterr().out
    assert rc == 0 and f"Dask scheduler {addr}: 2 workers" in out and "dashboard http://127.0.0.1:" in out
    assert (tmp_path / "Ti-pointwise-post_edge.npz").is_file()
    rc = main(["train", "--elements", "Ti", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2 and "no Dask scheduler answered at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_a_job_file_outside_the_cache_folders_is_refused(tmp_path):
    from xanes_agent.data.library import _store_job_files

    with pytest.raises(ValueError, match="outside the cache folders"):
        _store_job_files(tmp_path, {"../evil.py": b"x"})
    with pytest.raises(ValueError, match="outside the cache folders"):
        _store_job_files(tmp_path, {"feff/../../evil.py": b"x"})
    _store_job_files(tmp_path, {"feff/abc/result.json": b"{}", "feff/abc/xmu.dat": b"1"})
    assert sorted(p.name for p in (tmp_path / "feff" / "abc").iterdir()) == ["result.json", "xmu.dat"]
