"""A fly scan through a real 0MQ proxy into ``xanes-agent serve``: no reading lost, memory flat, lag.

Everything real, on 127.0.0.1: bluesky's 0MQ ``Proxy`` in its own process, ``xanes-agent serve`` in
its own process (subscribed to the proxy's output, publishing its predictions back to its input, the
models updating in a worker at most ``--max-rate`` times a second), and this process publishing one
run with bluesky's ``Publisher`` (data-only msgpack, as the project's ``wire`` module reads it):
event pages of ``--page`` readings paced to ``--rate`` readings per second for ``--seconds``. The
energy sweeps back and forth across the edge (a quick-XAS monochromator), mu is a held-out Cu spectrum
of the bundled library with noise.

Printed: readings sent and counted by the agent's final prediction (none lost), the serve process's
resident memory a tenth into the run, at its middle and at its end (flat: the spectrum is binned), and the
prediction lag, from a page's publication to the arrival of the first prediction that includes it
(the round trip through the proxy included), p50 and p99.

    python benchmarks/fly_scan.py [--rate 10000] [--seconds 60] [--page 100] [--max-rate 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from bluesky.callbacks.zmq import Publisher
from event_model import compose_run

from xanes_agent.agent.wire import pack, unpack
from xanes_agent.data.library import load_bundled_library
from xanes_agent.foundation.normalization import find_e0
from xanes_agent.models.demo import ensure_demo_model

PROXY = ("from bluesky.callbacks.zmq import Proxy\n"
         "p = Proxy('tcp://127.0.0.1', 'tcp://127.0.0.1')\n"
         "print(p.in_port, p.out_port, flush=True)\n"
         "p.start()\n")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=10_000, help="readings per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--page", type=int, default=100, help="readings per event page")
    ap.add_argument("--max-rate", type=float, default=20.0, help="the agent's model updates per second at most")
    ap.add_argument("--models", default=".cache/models")
    ap.add_argument("--out", default="out/fly_scan")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_demo_model(Path(a.models), "Cu")
    lib = load_bundled_library().where(element="Cu", split="test")
    s = lib.spectrum(0)
    e0 = find_e0(s.energy, s.mu)

    proxy = subprocess.Popen([sys.executable, "-c", PROXY], stdout=subprocess.PIPE, text=True)
    in_addr, out_addr = proxy.stdout.readline().split()  # 'tcp://127.0.0.1:PORT' each
    serve = subprocess.Popen(
        [sys.executable, "-m", "xanes_agent", "serve", "--subscribe", out_addr, "--publish", in_addr,
         "--models", a.models, "--intervals", "same-code", "--max-runs", "1", "--max-rate", str(a.max_rate),
         "--jsonl", str(out / "agent.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    received: list[tuple[float, int]] = []  # (arrival, readings included) of each prediction
    stop_listening = threading.Event()

    def listen() -> None:  # this thread's own socket: 0MQ sockets are not shared between threads
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.connect(out_addr)
        sub.setsockopt(zmq.SUBSCRIBE, b"xanes-agent")
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while not stop_listening.is_set():
            if not poller.poll(100):
                continue
            msg = sub.recv()
            t = time.perf_counter()
            _, name, payload = msg.split(b" ", 2)
            if name == b"event":
                received.append((t, int(unpack(payload)["data"]["n_readings"])))
        sub.close(linger=0)

    listener = threading.Thread(target=listen, daemon=True)
    try:
        line = serve.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"serve did not start: {line}{serve.stdout.read()}")
        listener.start()
        publisher = Publisher(in_addr, serializer=pack)
        time.sleep(1.5)  # 0MQ slow joiner: let both subscriptions reach the proxy
        bundle = compose_run(metadata={"element": "Cu", "edge": "K", "plan_name": "fly_scan",
                                       "xas": {"energy_field": "energy", "mu_field": "mu"}})
        desc = bundle.compose_descriptor(name="primary", data_keys={
            "energy": {"dtype": "number", "shape": [], "source": "mono", "units": "eV"},
            "mu": {"dtype": "number", "shape": [], "source": "det"}})
        publisher("start", bundle.start_doc)
        publisher("descriptor", desc.descriptor_doc)
        n_pages = int(a.rate * a.seconds / a.page)
        period = a.page / a.rate
        rng = np.random.default_rng(0)
        sent_at = np.empty(n_pages)
        rss = {}
        t0 = time.perf_counter()
        for k in range(n_pages):
            target = t0 + k * period
            while time.perf_counter() < target:
                time.sleep(max(0.0, min(0.001, target - time.perf_counter())))
            tt = (k * a.page + np.arange(a.page)) / a.rate
            phase = (tt / 5.0) % 2.0  # a 5 s sweep up, then down
            e = e0 - 30 + 100 * np.where(phase < 1, phase, 2 - phase)
            mu = np.interp(e, s.energy, s.mu) + rng.normal(0, 0.003, a.page)
            sent_at[k] = time.perf_counter()
            publisher("event_page", desc.compose_event_page(
                data={"energy": e.tolist(), "mu": mu.tolist()}, timestamps={"energy": tt.tolist(), "mu": tt.tolist()},
                seq_num=list(range(k * a.page + 1, (k + 1) * a.page + 1))))
            if k == n_pages // 10:
                rss["start"] = rss_mb(serve.pid)  # a tenth in: the run started, the spectrum buffer allocated
            if k == n_pages // 2:
                rss["middle"] = rss_mb(serve.pid)
        sent_for = time.perf_counter() - t0
        rss["end"] = rss_mb(serve.pid)
        publisher("stop", bundle.compose_stop())
        report = serve.communicate(timeout=120)[0]
        time.sleep(0.5)
    finally:
        stop_listening.set()
        if serve.poll() is None:
            serve.kill()
        proxy.kill()
    listener.join(timeout=5)
    n_sent = n_pages * a.page
    times, counts = np.array(received).T
    cum = np.arange(1, n_pages + 1) * a.page
    first = np.searchsorted(counts, cum)
    covered = first < len(times)
    lag = (times[first[covered]] - sent_at[covered]) * 1e3
    print(f"{n_sent:,} readings in {n_pages:,} pages of {a.page} over {sent_for:.1f} s "
          f"({n_sent / sent_for:,.0f} readings/s) through a bluesky 0MQ proxy into xanes-agent serve "
          f"(models updating at most {a.max_rate:g}/s in the worker)")
    print(f"  readings in the agent's final prediction: {int(counts.max()):,} of {n_sent:,} "
          f"(lost: {n_sent - int(counts.max()):,}); predictions received: {len(times)}")
    print(f"  serve RSS: a tenth in {rss['start']:.0f} MB, middle {rss['middle']:.0f} MB, end {rss['end']:.0f} MB")
    print(f"  prediction lag (page published -> first prediction holding it, via the proxy): "
          f"p50 {np.percentile(lag, 50):.0f} ms, p99 {np.percentile(lag, 99):.0f} ms, max {lag.max():.0f} ms")
    tenth = max(1, len(lag) // 10)
    print(f"  lag in the first tenth of the run p99 {np.percentile(lag[:tenth], 99):.0f} ms; in the rest "
          f"p50 {np.percentile(lag[tenth:], 50):.0f} ms, p99 {np.percentile(lag[tenth:], 99):.0f} ms")
    print("  serve said: " + " | ".join(ln for ln in report.splitlines() if ln.strip())[-400:])


if __name__ == "__main__":
    main()
