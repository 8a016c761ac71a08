"""The agent as a separate process behind a real bluesky 0MQ proxy on 127.0.0.1, and offline replay."""

import subprocess
import sys
import time

import bluesky.plans as bp
import pytest
import zmq
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher

from xanes_agent.agent.wire import pack, unpack
from xanes_agent.documents import JSONLWriter, read_jsonl
from xanes_agent.simulator import make_beamline, sample_from_library


@pytest.fixture
def sample(bundled_library):
    return sample_from_library(bundled_library, element="Cu", split="test", rng=5, coordination_number=4.0)


class _Exploit:
    """A pickle that, if ever unpickled, creates a marker file (what an attacker's payload would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_agent_in_separate_process_over_0mq(sample, cu_agent_model, tmp_path, zmq_proxy, scan_until_served):
    """``serve`` behind a real proxy: hostile messages first (a pickle that would create a file, an
    unknown document name, junk), then a real run published as msgpack. Nothing is executed, the
    bad messages are counted and named, and the run is still analysed."""
    models = tmp_path / "models"
    models.mkdir()
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    in_addr, out_addr = zmq_proxy

    # listen to everything the proxy forwards, the agent's own documents included
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(out_addr)
    sub.setsockopt(zmq.SUBSCRIBE, b"xanes-agent")
    received = []  # drained in this thread after the run: a 0MQ socket is never shared between threads

    proc = subprocess.Popen(
        [sys.executable, "-m", "xanes_agent", "serve", "--subscribe", out_addr,
         "--publish", in_addr, "--models", str(models), "--max-runs", "1", "--intervals", "same-code",
         "--jsonl", str(tmp_path / "agent.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening" in line, line
        time.sleep(1.0)  # 0MQ slow joiner: let the agent's subscription reach the proxy
        import pickle

        marker = tmp_path / "pwned"
        hostile = ctx.socket(zmq.PUB)
        hostile.connect(in_addr)
        time.sleep(0.5)
        hostile.send(b"bluesky start " + pickle.dumps({"uid": "x", "payload": _Exploit(marker)}))
        hostile.send(b"bluesky no_such_document " + pack({"uid": "y"}))
        hostile.send(b"junk-without-spaces")
        hostile.send(b"bluesky start \xc1\xff\x00")
        hostile.close(linger=1000)
        bl = make_beamline(sample, seed=0, flux=1e9)
        RE = RunEngine({})
        publisher = Publisher(in_addr, serializer=pack)
        RE.subscribe(publisher)
        raw = []
        RE.subscribe(lambda n, d: raw.append((n, d)))
        out = scan_until_served(RE, lambda: bp.scan([bl.det], bl.mono, 8950, 9060, 120), bl.md, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "CN" in out and "120 points" in out
    assert not marker.exists(), "a pickled payload was executed"
    assert "not a data-only msgpack document" in out and "unknown document name" in out, out
    docs = list(read_jsonl(tmp_path / "agent.jsonl"))
    raw_starts = [d["uid"] for n, d in raw if n == "start"]
    assert docs[0][0] == "start" and docs[0][1]["raw_run_uid"] in raw_starts
    assert docs[-1][0] == "stop"
    while sub.poll(timeout=2000):
        prefix, name, doc = sub.recv().split(b" ", 2)
        received.append((name.decode(), unpack(doc)))
    sub.close(linger=0)
    ctx.term()
    publisher.close()
    names = [n for n, _ in received]
    assert names[0] == "start" and names[-1] == "stop", "agent documents did not come back through the proxy"
    assert received[0][1]["raw_run_uid"] == docs[0][1]["raw_run_uid"]


def test_replay_cli(sample, cu_agent_model, tmp_path, capsys):
    from xanes_agent.cli import main

    models = tmp_path / "models"
    models.mkdir()
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    bl = make_beamline(sample, seed=0, flux=1e9)
    path = tmp_path / "run.jsonl"
    w = JSONLWriter(path)
    RunEngine({})(bp.scan([bl.det], bl.mono, 8950, 9060, 80), w, **bl.md)
    w.close()
    assert main(["replay", str(path), "--models", str(models), "--png-dir", str(tmp_path / "png"),
                 "--jsonl", str(tmp_path / "agent.jsonl")]) == 0
    assert "80 points" in capsys.readouterr().out
    assert len(list((tmp_path / "png").glob("agent_*.png"))) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('["start", {"uid": "x"}]\nnot json\n')
    assert main(["replay", str(bad), "--models", str(models)]) == 2  # nothing usable at all
    # a recording with a junk line, an unknown document name, and a last run cut off mid-line:
    # every complete run is still reported, the damage is named, and the exit status says so
    w = JSONLWriter(tmp_path / "second.jsonl")
    RunEngine({})(bp.scan([bl.det], bl.mono, 8950, 9060, 50), w, **bl.md)
    w.close()
    lines, second = path.read_text().splitlines(), (tmp_path / "second.jsonl").read_text().splitlines()
    cut = "\n".join(lines + ["garbage{", '["no_such_doc", {}]'] + second[:-3] + [second[-3][:25]]) + "\n"
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(cut)
    capsys.readouterr()
    assert main(["replay", str(damaged), "--models", str(models)]) == 1
    out, err = capsys.readouterr()
    assert out.count("80 points") == 1 and " points" in out.splitlines()[-1]  # the complete run, and the cut one
    assert "not JSON" in err and "unknown document name" in err and "no stop document" in err
