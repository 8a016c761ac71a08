"""Write a simulated transmission scan of a library sample as an XDI file, for trying ``predict``.

    python scripts/simulated_xdi.py [--sample-id ID | --element Cu] [--start -30] [--stop 40]
                                    [--step 0.5] [--seed 0] --out sample.xdi

A real RunEngine runs ``bluesky.plans.list_scan`` over the simulated beamline (the sample's mu
replayed with Poisson counting noise, :mod:`xanes_agent.simulator`), from ``--start`` to
``--stop`` eV around the sample's E0; the file holds energy (eV), i0 and itrans (counts), and the
element and edge in its header, as a beamline's XDI export would. The true labels are printed,
not written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine

from xanes_agent.data.library import load_bundled_library
from xanes_agent.foundation.normalization import find_e0
from xanes_agent.simulator import make_beamline
from xanes_agent.simulator.samples import sample_from_library


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample-id", default=None)
    ap.add_argument("--element", default="Cu")
    ap.add_argument("--start", type=float, default=-30.0, help="eV relative to the sample's E0")
    ap.add_argument("--stop", type=float, default=40.0, help="eV relative to the sample's E0")
    ap.add_argument("--step", type=float, default=0.5, help="eV")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lib = load_bundled_library()
    sample = sample_from_library(lib, a.sample_id, element=None if a.sample_id else a.element,
                                 split=None if a.sample_id else "test", rng=a.seed)
    e0 = find_e0(sample.energy, sample.mu)
    energies = np.arange(e0 + a.start, e0 + a.stop + a.step / 2, a.step)
    bl = make_beamline(sample, seed=a.seed)
    rows: list[tuple[float, float, float]] = []

    def keep(name, doc):
        if name == "event":
            d = doc["data"]
            rows.append((d[bl.mono.name], d[f"{bl.det.name}_i0"], d[f"{bl.det.name}_it"]))

    RunEngine({})(bp.list_scan([bl.det], bl.mono, list(energies)), keep)
    lines = ["# XDI/1.0 xanes-agent-simulator/1.0", "# Column.1: energy eV", "# Column.2: i0",
             "# Column.3: itrans", f"# Element.symbol: {sample.element}", f"# Element.edge: {sample.edge}",
             f"# Sample.name: {sample.id} (simulated)", "#----", "# energy i0 itrans"]
    lines += [f"{e:.4f} {i0:.0f} {it:.0f}" for e, i0, it in rows]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}: {len(rows)} points {energies[0]:.1f}-{energies[-1]:.1f} eV of {sample.id}; "
          f"true labels {sample.labels}")


if __name__ == "__main__":
    main()
