"""What a converged FEFF10 SCF costs, and so whether its charge transfer can be a label (issue 13.4).

FEFF prints the absorber's charge transfer (electrons gained within its Norman sphere: a charge
partitioned from the self-consistent density, the nearest reachable analogue of the study's Bader
charge) only when its SCF loop converges. The library's ``reduced-v1`` set stops the SCF after 10
iterations, where it rarely has. For N library calculations (deterministic choice, per element,
from the FEFF cache) this runs FEFF10 again with each SCF setting below, all in this process one
after another (same load), and reports per setting: the share that converged, the wall time
against the library setting's, the charge transfer, and how much the spectrum moved (correlation
and max |difference| on E0-5..E0+45 eV, post-edge normalized, as ``compare_feff_params.py``).

    python scripts/scf_convergence_cost.py --per-element 1 --out out/scf_convergence
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from compare_feff_params import compare
from scf_mixing_effect import rerun_sites

from xanes_agent.data.feff import run_feff, with_scf

#: (iterations, mixing): the library's setting first (the time reference), then longer and gentler loops
SETTINGS = ((10, 0.2), (30, 0.2), (30, 0.05), (60, 0.2))


def job(entry: Path) -> dict:
    inp = (entry / "feff.inp").read_text()
    rec = json.loads((entry / "result.json").read_text())
    row: dict = {"id": rec["meta"].get("id", entry.name), "runs": []}
    ref = None
    for iterations, mixing in SETTINGS:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_feff(with_scf(inp, iterations=iterations, mixing=mixing), tmp)
        run = {"iterations": iterations, "mixing": mixing, "ok": r.ok, "reason": r.reason, "seconds": r.seconds,
               "charge_transfer": r.charge_transfer, "converged": bool(np.isfinite(r.charge_transfer)),
               "fallback": r.scf_mixing_fallback}
        if r.ok and ref is None:
            ref = (r.energy, r.mu)
        elif r.ok:
            run.update(compare(ref, (r.energy, r.mu)))
        row["runs"].append(run)
    return row


def main() -> None:
    rows = rerun_sites(job, __doc__.splitlines()[0], 1, "out/scf_convergence")
    print(f"FEFF10 SCF settings on {len(rows)} library calculations (reduced-v1 otherwise unchanged)")
    print(f"{'id':26s} " + " ".join(f"{f'{n} it/{m:g}':>22s}" for n, m in SETTINGS))
    for r in rows:
        cells = []
        for run in r["runs"]:
            ct = f"{run['charge_transfer']:+.3f} e" if run["converged"] else "not conv."
            cells.append(f"{run['seconds']:6.0f} s {ct:>11s}" if run["ok"] else f"{'failed':>22s}")
        print(f"{r['id']:26s} " + " ".join(f"{c:>22s}" for c in cells))
    print()
    print(f"{'setting':14s} {'converged':>10s} {'time vs 10 it/0.2':>18s} {'median corr':>12s} {'max dev':>8s}")
    base = np.array([r["runs"][0]["seconds"] for r in rows])
    for k, (n, m) in enumerate(SETTINGS):
        runs = [r["runs"][k] for r in rows]
        conv = np.mean([x["converged"] for x in runs])
        ratio = np.array([x["seconds"] for x in runs]) / base
        corr = [x["corr"] for x in runs if "corr" in x]
        dev = [x["max_dev"] for x in runs if "max_dev" in x]
        print(f"{f'{n} it / {m:g}':14s} {conv:10.0%} {f'{np.median(ratio):.2f}x (max {ratio.max():.2f}x)':>18s} "
              f"{(f'{np.median(corr):.4f}' if corr else '-'):>12s} {(f'{max(dev):.3f}' if dev else '-'):>8s}")


if __name__ == "__main__":
    main()
