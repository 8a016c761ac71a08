"""Queue-server mode against a real bluesky-queueserver on loopback.

Real components, each in its own process: a Redis server (the queue's store), a bluesky 0MQ proxy,
the RE Manager with the simulated beamline as its startup module (its RunEngine publishes to the
proxy), and ``xanes-agent serve --queue``. This test plays the beamline user: it queues the
survey, starts the queue, and starts it again each time the agent has suggested a plan.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("bluesky_queueserver", reason="the 'queue' extra is not installed")
from bluesky_queueserver_api import BPlan  # noqa: E402
from bluesky_queueserver_api.zmq import REManagerAPI  # noqa: E402

from xanes_agent.simulator.qserver import PERMISSIONS, STARTUP_MODULE  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def stack(tmp_path, bundled_library, zmq_proxy):
    """Redis, a 0MQ proxy and an RE Manager whose worker replays a held-out Cu spectrum."""
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.skip("redis-server not installed (.ci/run installs it from Debian's packages)")
    procs = []

    def spawn(cmd, **kw):
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        procs.append(p)
        return p

    redis_port, control_port, info_port = free_port(), free_port(), free_port()
    spawn([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
          stdout=subprocess.DEVNULL)
    in_addr, out_addr = zmq_proxy
    lib = bundled_library.where(element="Cu", split="test")
    sample_id = str(lib.ids[np.flatnonzero(lib.labels["coordination_number"] == 4)[0]])
    env = {**os.environ, "XANES_AGENT_PUBLISH": in_addr, "XANES_AGENT_SAMPLE": sample_id, "XANES_AGENT_SEED": "3"}
    log = open(tmp_path / "re_manager.log", "w")
    spawn(["start-re-manager" if shutil.which("start-re-manager") else
           os.path.join(os.path.dirname(sys.executable), "start-re-manager"),
           "--startup-module", STARTUP_MODULE, "--user-group-permissions", str(PERMISSIONS),
           "--existing-plans-devices", str(tmp_path / "existing_plans_and_devices.yaml"),
           "--redis-addr", f"127.0.0.1:{redis_port}", "--redis-name-prefix", "xanes_agent_test",
           "--zmq-control-addr", f"tcp://127.0.0.1:{control_port}",
           "--zmq-info-addr", f"tcp://127.0.0.1:{info_port}", "--zmq-publish-console", "OFF"],
          env=env, stdout=log, stderr=subprocess.STDOUT)
    api = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control_port}", timeout_recv=10.0)
    t0 = time.monotonic()
    while True:
        try:
            api.status()
            break
        except Exception as exc:
            if time.monotonic() - t0 > 60:
                log = (tmp_path / "re_manager.log").read_text()[-2000:]
                raise RuntimeError("RE Manager did not answer: " + log) from exc
            time.sleep(0.5)
    api.environment_open()
    api.wait_for_idle(timeout=120)
    assert api.status()["worker_environment_exists"], (tmp_path / "re_manager.log").read_text()[-2000:]
    try:
        yield {"api": api, "control": f"tcp://127.0.0.1:{control_port}", "proxy_out": out_addr}
    finally:
        try:
            api.environment_close()
            api.wait_for_idle(timeout=30)
        except Exception:
            pass
        api.close()
        log.close()
        for p in reversed(procs):
            _stop(p)


def _wait_for_suggestion(api, agent: subprocess.Popen, timeout: float = 60.0) -> bool:
    """True once an item waits in the queue; False when the agent has exited (session closed)."""
    t0 = time.monotonic()
    while api.status()["items_in_queue"] < 1:
        if agent.poll() is not None:
            return False
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the agent neither suggested a plan nor closed the session")
        time.sleep(0.2)
    return True


def _run_one(api) -> None:
    """Start the queue and ask it to stop after the item it runs; wait until it is idle."""
    api.queue_start()
    try:
        api.queue_stop()
    except Exception:  # noqa: BLE001 - the item already finished: the queue is idle, nothing to stop
        pass
    api.wait_for_idle(timeout=60)


def test_agent_suggests_plans_to_a_real_queue_server(stack, cu_agent_model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    api = stack["api"]
    agent = subprocess.Popen(
        [sys.executable, "-m", "xanes_agent", "serve", "--subscribe", stack["proxy_out"], "--queue", stack["control"],
         "--models", str(models), "--intervals", "same-code",
         "--max-sessions", "1", "--batch-size", "2", "--max-points", "110",
         "--cn-probability", "0.95", "--distance-std", "0.002", "--charge-std", "0.01",
         "--jsonl", str(tmp_path / "agent.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert "listening" in agent.stdout.readline()
        time.sleep(1.0)  # 0MQ slow joiner
        # the user queues the survey and runs it, one item at a time (queue_stop: stop after the
        # running plan), so an agent quicker than the manager's return to idle (models preloaded)
        # still finds its suggestion waiting, not run at once by a queue still started
        api.item_add(BPlan("xas_survey_scan", ["det"], "mono_energy", 8979.0, md={"xas_session": "sample-1"}))
        _run_one(api)
        suggested = []
        for _ in range(40):  # one suggestion at a time until the agent closes the session (budget: ~15)
            if not _wait_for_suggestion(api, agent):
                break  # the agent closed the session: nothing more to suggest
            time.sleep(1.0)
            status = api.status()
            # the agent only adds: the queue stays idle, its item waits for the user
            assert status["manager_state"] == "idle" and status["items_in_queue"] == 1
            item = api.queue_get()["items"][0]
            suggested.append(item)
            _run_one(api)
        out, _ = agent.communicate(timeout=60)
    finally:
        _stop(agent)
    print(out)
    assert agent.returncode == 0, out
    assert suggested, out
    history = api.history_get()["items"]
    assert history[0]["name"] == "xas_survey_scan"
    # a suggestion that arrives while the queue still runs is run by it too: check them all
    ran = history[1:]
    assert len(ran) == out.count(": suggested after") >= len(suggested)
    assert all(h["result"]["exit_status"] == "completed" for h in history)
    for item in ran:
        assert item["name"] == "xas_ranges_scan" and item["user"] == "xanes-agent"
        assert item["args"] == [["det"], "mono_energy"]
        md = item["kwargs"]["md"]
        assert md["xas_session"] == "sample-1" and md["suggested_by"]["agent"] == "xanes-agent"
        assert len(md["suggested_by"]["proposal_uids"]) == len(item["kwargs"]["ranges"]) <= 2
        for start, stop, step in item["kwargs"]["ranges"]:
            assert 8979.0 - 10 < start < stop < 8979.0 + 100 and step > 0
    uids = {item["kwargs"]["md"]["suggested_by"]["agent_uid"] for item in ran}
    assert len(uids) == 1
    stops = ("confident", "stable", "settled, CN undecided", "point budget")
    assert "closed" in out and any(w in out for w in stops), out
    assert api.status()["items_in_queue"] == 0  # nothing suggested after the session closed


def test_queue_away_is_recorded_not_raised(bundled_library, cu_agent_model):
    """With no queue server answering, the suggester records the failed request and carries on."""
    from bluesky import RunEngine

    from xanes_agent.agent import ModelStore
    from xanes_agent.agent.queue import QueueSuggester
    from xanes_agent.plans import xas_survey_scan
    from xanes_agent.simulator import make_beamline, sample_from_library

    api = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{free_port()}", timeout_recv=0.3, timeout_send=0.3)
    suggester = QueueSuggester(ModelStore(models={"Cu": cu_agent_model}), api, detectors=["det"], motor="mono_energy")
    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=3)
    bl = make_beamline(sample, seed=0, flux=1e9)
    RE = RunEngine({})
    RE.subscribe(suggester)
    RE(xas_survey_scan([bl.det], bl.mono, 8979.0, md=bl.md))
    api.close()
    assert suggester.decisions[-1]["kind"] == "suggestion_failed"
    plan = suggester.decisions[-1]["plan"]
    assert plan["name"] == "xas_ranges_scan" and plan["args"] == [["det"], "mono_energy"]
    import json

    json.dumps(plan)  # JSON-safe, as the queue server requires
    # the survey, the edge pass (up to MAX_EDGE_PASSES of them where the edge has two steps or a
    # pre-edge peak: which sample rng=3 picks changes as the library grows) and the normalization
    # point, no proposal; where two passes meet the same energies they count once
    from xanes_agent.agent.policy import DEFAULT_EDGE_HALFWIDTH, DEFAULT_SURVEY, MAX_EDGE_PASSES
    from xanes_agent.foundation.energies import range_energies

    n_survey = len(range_energies(*DEFAULT_SURVEY))
    n_edge = len(range_energies(-DEFAULT_EDGE_HALFWIDTH, DEFAULT_EDGE_HALFWIDTH, 0.5))
    n_norm = 1  # the normalization point, E0 + 50 eV
    n = suggester.sessions[next(iter(suggester.sessions))].n_points
    assert n_survey + n_edge - 3 <= n <= n_survey + MAX_EDGE_PASSES * n_edge + n_norm


def test_session_without_an_edge_waits_for_one(bundled_library, cu_agent_model):
    """A run that misses the edge leaves the session open (no suggestion, no closure); the survey
    that follows in the same session gets a suggestion (here: a failed request, no server)."""
    from bluesky import RunEngine
    from bluesky.plans import list_scan

    from xanes_agent.agent import ModelStore
    from xanes_agent.agent.queue import QueueSuggester
    from xanes_agent.plans import xas_survey_scan
    from xanes_agent.simulator import make_beamline, sample_from_library

    api = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{free_port()}", timeout_recv=0.3, timeout_send=0.3)
    suggester = QueueSuggester(ModelStore(models={"Cu": cu_agent_model}), api)
    bl = make_beamline(sample_from_library(bundled_library, element="Cu", split="test", rng=3), seed=0, flux=1e9)
    RE = RunEngine({})
    RE.subscribe(suggester)
    md = {**bl.md, "xas_session": "s"}
    RE(list_scan([bl.det], bl.mono, list(np.linspace(8900, 8950, 11)), md=md))  # pre-edge only
    assert suggester.decisions[-1]["kind"] == "waiting" and not suggester.sessions["s"].closed
    RE(xas_survey_scan([bl.det], bl.mono, 8979.0, md=md))
    api.close()
    assert suggester.decisions[-1]["kind"] == "suggestion_failed" and len(suggester.sessions["s"].runs) == 2
