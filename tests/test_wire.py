"""Documents over 0MQ as data only: msgpack round trips, and everything else is refused, not run."""

import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xanes_agent.agent.wire import MAX_MESSAGE_BYTES, DocumentSubscriber, pack, unpack


def test_round_trip_with_arrays():
    doc = {"uid": "u", "data": {"mu": np.arange(5, dtype=np.float32), "n": np.int64(3), "img": np.eye(2)},
           "seq_num": 1, "flag": True, "none": None, "names": ["a", "b"]}
    back = unpack(pack(doc))
    assert back["uid"] == "u" and back["seq_num"] == 1 and back["flag"] is True and back["none"] is None
    np.testing.assert_array_equal(back["data"]["mu"], doc["data"]["mu"])
    assert back["data"]["mu"].dtype == np.float32 and back["data"]["n"] == 3
    np.testing.assert_array_equal(back["data"]["img"], np.eye(2))


def test_msgpack_numpy_publishers_are_understood():
    """A beamline profile without xanes-agent uses msgpack_numpy.encode: its numeric arrays decode."""
    import msgpack_numpy

    raw = msgpack.packb({"data": {"x": np.linspace(0, 1, 4)}}, default=msgpack_numpy.encode)
    np.testing.assert_allclose(unpack(raw)["data"]["x"], np.linspace(0, 1, 4))


def test_object_arrays_and_pickles_are_refused(tmp_path):
    import msgpack_numpy

    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            import pathlib

            return (pathlib.Path.touch, (pathlib.Path(str(marker)),))

    # msgpack_numpy ships object arrays as pickles: never decoded here
    obj = np.empty(1, dtype=object)
    obj[0] = Boom()
    evil = msgpack.packb({"data": obj}, default=msgpack_numpy.encode)
    for payload in (evil, pickle.dumps({"uid": Boom()}), pickle.dumps({"uid": "plain"}),
                    msgpack.packb([1, 2]), msgpack.packb(msgpack.ExtType(5, b"x")), b"",
                    msgpack.packb({b"raw": 1})):
        with pytest.raises(ValueError):
            unpack(payload)
    assert not marker.exists()


def test_oversize_and_inconsistent_arrays_are_refused():
    with pytest.raises(ValueError, match="limit"):
        unpack(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    bad = msgpack.packb({"a": {b"nd": True, b"type": "<f8", b"kind": b"", b"shape": [10], b"data": b"\x00" * 8}})
    with pytest.raises(ValueError, match="shape"):
        unpack(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_valueerror(data):
    try:
        doc = unpack(data)
    except ValueError:
        return
    assert isinstance(doc, dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"start", b"event", b"nope", b"", b"stop stop"]))
def test_subscriber_counts_and_never_raises(payload, name):
    sub = DocumentSubscriber("tcp://127.0.0.1:9", no_proxy_warning_s=1e9)  # never connects: handle() only
    got = []
    sub.subscribe(lambda n, d: got.append((n, d)))
    sub.subscribe(lambda n, d: 1 / 0)  # a failing callback is counted, not raised
    try:
        sub.handle(b"bluesky " + name + b" " + payload)
        sub.handle(b"bluesky start " + pack({"uid": "ok"}))
    finally:
        sub.close()
    assert got[-1] == ("start", {"uid": "ok"})
    assert sub.stats.delivered == len(got) and sub.stats.skipped["callback error"] == len(got)


def test_a_proxy_restart_is_logged_not_silent(caplog):
    """Documents published while the proxy is away are lost: the subscriber says so when the
    connection drops and when it comes back (a real bluesky Proxy, killed and restarted)."""
    import logging
    import socket
    import subprocess
    import sys
    import threading
    import time

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    pin, pout = free_port(), free_port()
    code = ("from bluesky.callbacks.zmq import Proxy\n"
            f"Proxy('tcp://127.0.0.1:{pin}', 'tcp://127.0.0.1:{pout}').start()\n")

    def start():
        return subprocess.Popen([sys.executable, "-c", code])

    proxy = start()
    sub = DocumentSubscriber(f"tcp://127.0.0.1:{pout}")
    thread = threading.Thread(target=sub.run, kwargs={"poll_ms": 50}, daemon=True)
    caplog.set_level(logging.WARNING, logger="xanes_agent.agent.wire")
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not sub._connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sub._connected
        proxy.kill()
        proxy.wait()
        while "lost the 0MQ proxy" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "lost the 0MQ proxy" in caplog.text
        proxy = start()
        deadline = time.monotonic() + 20
        while "reconnected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reconnected" in caplog.text and sub.stats.disconnects == 1
    finally:
        sub.stop()
        thread.join(5)
        proxy.kill()
        proxy.wait()
