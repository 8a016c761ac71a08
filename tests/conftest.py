"""Shared fixtures: real files (FEFF outputs from the reference set, a computed library) only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: 40 OmniXAS materials vendored with their licence (tests/fixtures/omnixas_cu/README.md): every test
#: reads these, never ../shared, so a fresh clone runs them all; the process and its children see them
#: as the OmniXAS folder.
OMNIXAS_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "omnixas_cu"
os.environ["XANES_AGENT_OMNIXAS"] = str(OMNIXAS_FIXTURE)


@pytest.fixture(scope="session")
def omnixas_root() -> Path:
    return OMNIXAS_FIXTURE


@pytest.fixture(scope="session")
def cu_xmu(omnixas_root) -> Path:
    return omnixas_root / "mp-1036393" / "FEFF-XANES" / "015_Cu" / "xmu.dat"


@pytest.fixture(scope="session", autouse=True)
def _headless():
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def bundled_library():
    from xanes_agent.data.library import load_bundled_library

    return load_bundled_library()


@pytest.fixture(scope="session")
def cu_agent_model(bundled_library, tmp_path_factory):
    """A small but real Cu model (10 seeds x 12 trees) trained once per test session on the
    library's training split, saved and re-loaded as a bundle the way the agent gets it."""
    import numpy as np

    from xanes_agent.models.model import ElementModel
    from xanes_agent.models.training import TrainConfig, train_element

    lib = bundled_library.where(element="Cu")
    train = np.flatnonzero(lib.split == "train")
    rng = np.random.default_rng(1)
    keep = np.concatenate([rng.choice(train, 700, replace=False), np.flatnonzero(lib.split == "test")])
    model = train_element(lib[np.sort(keep)], "Cu", TrainConfig(n_seeds=10, n_estimators=12), progress=False)
    folder = tmp_path_factory.mktemp("models")
    path = model.save(folder / "Cu-pointwise-post_edge.npz")
    return ElementModel.load(path)


PROXY = ("from bluesky.callbacks.zmq import Proxy\n"
         "p = Proxy('tcp://127.0.0.1', 'tcp://127.0.0.1')\n"
         "print(p.in_port, p.out_port, flush=True)\n"
         "p.start()\n")


@pytest.fixture
def zmq_proxy():
    """A bluesky 0MQ ``Proxy`` in its own process, as at a beamline: loopback only, random free
    ports. Yields its (input, output) addresses, 'tcp://127.0.0.1:PORT' each."""
    proc = subprocess.Popen([sys.executable, "-c", PROXY], stdout=subprocess.PIPE, text=True)
    try:
        in_addr, out_addr = proc.stdout.readline().split()
        yield in_addr, out_addr
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def scan_until_served():
    """Run a plan until a ``serve`` process (started with ``--max-runs 1``) has reported and exited.

    On a busy machine the agent's 0MQ subscription can take hold mid-run: the agent then skips that
    run (it saw no start) and waits for the next, so the plan runs again. Returns what the
    process printed."""
    def run(RE, plan, md: dict, proc, attempts: int = 3) -> str:
        for attempt in range(attempts):
            RE(plan(), **md)
            try:
                return proc.communicate(timeout=30 if attempt < attempts - 1 else 120)[0]
            except subprocess.TimeoutExpired:
                continue
        proc.kill()
        return proc.communicate()[0]
    return run
