"""Generate tests/fixtures/larch_pre_edge.json with xraylarch's pre_edge (run once, outside CI).

xraylarch pulls in ~100 packages (~2.4 GB), so CI compares against these committed numbers instead.
Inputs: three OmniXAS Cu spectra (FEFF, extended with a synthetic sloping pre-edge background and a
post-edge so that the Athena ranges exist) and one synthetic arctan edge.

    python -m venv /tmp/larchvenv && /tmp/larchvenv/bin/pip install xraylarch
    /tmp/larchvenv/bin/python scripts/make_larch_fixture.py
"""

import json
from pathlib import Path

import numpy as np
from larch import Group
from larch.xafs import find_e0, pre_edge

ROOT = Path(__file__).resolve().parents[1]
OMNI = ROOT.parent / "shared" / "data" / "omnixas_cu"


def extended(path):
    cols = np.loadtxt(path, comments="#")
    e, mu = cols[:, 0], cols[:, 3]
    pre = np.arange(e[0] - 150.0, e[0], 2.0)
    post = np.arange(e[-1] + 3.0, e[-1] + 300.0, 3.0)
    energy = np.concatenate([pre, e, post])
    base = np.concatenate([np.full(len(pre), mu[0]), mu, np.full(len(post), mu[-5:].mean())])
    # a transmission-like background: a line falling with energy, plus a gentle post-edge decay
    bg = 0.8 - 2e-4 * (energy - energy[0])
    decay = np.where(energy > e[-1], -3e-4 * (energy - e[-1]), 0.0)
    return energy, 0.6 * base + bg + decay


cases = {}
for mid in ("mp-1036393/FEFF-XANES/015_Cu", "mp-1008807", "mp-1005792"):
    p = OMNI / mid
    if p.is_dir() and not (p / "xmu.dat").exists():
        p = next(p.glob("FEFF-XANES/*_Cu"))
    cases[p.parent.parent.name] = extended(p / "xmu.dat")
e = np.linspace(8800, 9400, 601)
cases["arctan"] = (e, 0.2 - 1e-4 * (e - 8800) + 1.1 * (0.5 + np.arctan((e - 8980) / 2.0) / np.pi))

out = {}
for name, (energy, mu) in cases.items():
    g = Group(energy=energy, mu=mu)
    pre_edge(g)
    out[name] = {"energy": energy.tolist(), "mu": mu.tolist(), "e0": float(g.e0),
                 "find_e0": float(find_e0(energy, mu)), "edge_step": float(g.edge_step),
                 "norm": np.asarray(g.norm).tolist(), "pre_edge": np.asarray(g.pre_edge).tolist(),
                 "post_edge": np.asarray(g.post_edge).tolist(),
                 "params": {k: float(getattr(g.pre_edge_details, k))
                            for k in ("pre1", "pre2", "norm1", "norm2", "nnorm")}}
import larch  # noqa: E402

path = ROOT / "tests" / "fixtures" / "larch_pre_edge.json"
path.write_text(json.dumps({"larch_version": larch.__version__, "cases": out}))
print(f"wrote {path} (larch {larch.__version__}): "
      + ", ".join(f"{k}: e0={v['e0']:.2f} step={v['edge_step']:.4f}" for k, v in out.items()))
