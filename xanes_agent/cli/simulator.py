"""Subcommand of the simulator room: ``simulate``."""

from __future__ import annotations

import argparse

import numpy as np

from .args import choose_sample, positive_int, sample_args


def cmd_simulate(a: argparse.Namespace) -> int:
    import bluesky.plans as bp
    from bluesky import RunEngine

    from ..documents import JSONLWriter
    from ..foundation.normalization import find_e0
    from ..simulator import make_beamline

    sample = choose_sample(a)
    bl = make_beamline(sample, seed=a.seed, flux=a.flux, dwell_time=a.dwell, include_truth=a.truth)
    e0 = find_e0(sample.energy, sample.mu)
    RE = RunEngine({})
    writer = JSONLWriter(a.out)
    events: list[tuple[float, float]] = []

    def collect(name, doc):
        if name == "event":
            events.append((doc["data"][bl.energy_field], doc["data"][bl.mu_field]))

    try:
        RE(bp.scan([bl.det], bl.mono, e0 + a.start, e0 + a.stop, a.points), [writer, collect], **bl.md)
    finally:
        writer.close()
    print(f"sample {sample.id} ({sample.element} {sample.edge}, labels {sample.labels}); "
          f"{len(events)} points written to {a.out}")
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        e, mu = np.array(events).T
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(e, mu, "o", ms=3, label="measured ln(i0/it)")
        ax.plot(e, bl.det.background + bl.det.edge_step * sample.mu_at(e), "k-", lw=1, label="ground truth")
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("mu (ln(i0/it))")
        ax.set_title(f"simulated scan: {sample.id}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"wrote {a.png}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("simulate", help="scan a simulated sample; write documents (JSONL) and a PNG")
    sample_args(s)
    s.add_argument("--start", type=float, default=-20.0, help="eV relative to the sample's E0")
    s.add_argument("--stop", type=float, default=50.0, help="eV relative to the sample's E0")
    s.add_argument("--points", type=positive_int, default=141)
    s.add_argument("--out", default="run.jsonl")
    s.add_argument("--png", default=None)
    s.set_defaults(func=cmd_simulate)
