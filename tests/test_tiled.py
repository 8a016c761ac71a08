"""Past runs from a real Tiled server: bluesky's TiledWriter on a RunEngine writes them into
``tiled serve`` on 127.0.0.1, and ``xanes-agent replay`` reads them back with the Tiled client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plans as bp
import pytest
from bluesky import RunEngine

pytest.importorskip("tiled.client")
pytest.importorskip("bluesky.callbacks.tiled_writer")

API_KEY = "xanesagenttestkey0123456789"  # Tiled takes alphanumeric keys only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiled_server(tmp_path_factory):
    """``tiled serve catalog`` with a fresh SQLite catalog, file and SQL (table) storage, loopback only."""
    root = tmp_path_factory.mktemp("tiled")
    port = _free_port()
    tiled = Path(sys.executable).with_name("tiled")
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([str(tiled), "serve", "catalog", str(root / "catalog.db"), "--init",
                             "-w", str(root / "data"), "-w", f"sqlite:///{root / 'tables.sqlite'}",
                             "--api-key", API_KEY, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError as exc:
                if proc.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text()) from exc
                time.sleep(0.2)
        yield uri
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def recorded(tiled_server, bundled_library, cu_agent_model):
    """Two Cu runs written by TiledWriter while an agent watches them live: one in the project's
    metadata convention, one that records only I0/It and names the element XDI's way."""
    from bluesky.callbacks.tiled_writer import TiledWriter
    from tiled.client import from_uri

    from xanes_agent.agent import ModelStore, XANESAgent
    from xanes_agent.simulator import make_beamline, sample_from_library

    client = from_uri(tiled_server, api_key=API_KEY)
    sample = sample_from_library(bundled_library, element="Cu", split="test", rng=5, coordination_number=4.0)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    live = []
    uids = []
    for convention in ("project", "xdi"):
        bl = make_beamline(sample, seed=1, flux=1e9)
        md = bl.md
        if convention == "xdi":
            bl.det.mu.kind = "omitted"
            md = {"XDI": {"Element": {"symbol": "Cu", "edge": "K"}}, "sample": {"id": "pellet-7"}}
        agent = XANESAgent(ModelStore(models={"Cu": cu_agent_model}))
        token = RE.subscribe(agent)
        (uid,) = RE(bp.scan([bl.det], bl.mono, 8950, 9060, 75), **md, purpose=f"tiled-{convention}")
        RE.unsubscribe(token)
        live.append(agent.finished[0])
        uids.append(uid)
    return uids, live


def test_replay_from_tiled_equals_the_live_agent(tiled_server, recorded, cu_agent_model, tmp_path):
    from xanes_agent.agent import ModelStore
    from xanes_agent.agent.server import replay_documents
    from xanes_agent.catalog import tiled_documents

    uids, live = recorded
    problems: list[str] = []
    docs = list(tiled_documents(tiled_server, uids=uids, api_key=API_KEY, problems=problems))
    assert problems == []
    assert [n for n, _ in docs].count("start") == 2 and [n for n, _ in docs].count("stop") == 2
    agents = replay_documents(docs, tiled_server, ModelStore(models={"Cu": cu_agent_model}), problems=problems)
    reports = [ag.finished[0] for ag in agents]
    assert [r["raw_run_uid"] for r in reports] == uids
    for got, want in zip(reports, live):
        assert got["n_points"] == want["n_points"] == 75
        assert got["predictions"].keys() == want["predictions"].keys()
        for name, p in want["predictions"].items():
            for key, value in p.items():  # prediction, intervals, probabilities, domain score
                assert got["predictions"][name][key] == pytest.approx(value, rel=1e-12), (name, key)


def test_replay_cli_selects_runs_by_uid_and_by_search(tiled_server, recorded, cu_agent_model, tmp_path, capsys):
    from xanes_agent.cli import main

    uids, _ = recorded
    models = tmp_path / "models"
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    common = ["--models", str(models), "--api-key", API_KEY]
    assert main(["replay", tiled_server, "--uid", uids[0], *common]) == 0
    out = capsys.readouterr().out
    assert f"run {uids[0][:8]} Cu: 75 points" in out and uids[1][:8] not in out
    assert main(["replay", tiled_server, "--search", "purpose=tiled-xdi", *common]) == 0
    out = capsys.readouterr().out
    assert f"run {uids[1][:8]} Cu: 75 points" in out and uids[0][:8] not in out
    assert "taken from the start document's 'XDI.Element.symbol'" in out
    # a missing uid is named, the found run still replayed (exit 1: something was skipped)
    assert main(["replay", tiled_server, "--uid", "no-such-run", uids[0], *common]) == 1
    captured = capsys.readouterr()
    assert "no run no-such-run in the catalog" in captured.err and uids[0][:8] in captured.out
    # no key: the server refuses, and the command says so in one line
    assert main(["replay", tiled_server, "--models", str(models), "--api-key", "wrong"]) == 2
    assert "could not open the Tiled catalog" in capsys.readouterr().err
