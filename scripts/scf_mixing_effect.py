"""How much the SCF-mixing fallback (0.2 -> 0.05) moves spectra that did not need it.

For N library calculations that succeeded with the default mixing (deterministic choice, two per
element from the FEFF cache), run FEFF10 again with ``FALLBACK_SCF_MIXING`` and compare the two
spectra like ``compare_feff_params.py`` does (post-edge normalization, E0-5..E0+45 eV): correlation,
max |difference|, E0 shift.

    python scripts/scf_mixing_effect.py --per-element 2 --out out/scf_mixing
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from compare_feff_params import compare

from xanes_agent.data.feff import FALLBACK_SCF_MIXING, run_feff, with_scf


def pick(cache: Path, per_element: int) -> list[Path]:
    by_element: dict[str, list[Path]] = {}
    for rf in sorted(cache.glob("*/result.json")):
        rec = json.loads(rf.read_text())
        mid = rec.get("meta", {}).get("id", "")
        if rec["ok"] and not rec.get("scf_mixing_fallback") and mid.count("-") == 2 and "SCF" in (
            rf.parent / "feff.inp"
        ).read_text():
            by_element.setdefault(mid.split("-")[1], []).append(rf.parent)
    rng = np.random.default_rng(0)
    return [e for el in sorted(by_element) for e in rng.permutation(by_element[el])[:per_element]]


def job(entry: Path) -> dict:
    inp = (entry / "feff.inp").read_text()
    rec = json.loads((entry / "result.json").read_text())
    ref = np.loadtxt(entry / "xmu.dat", comments="#")
    with tempfile.TemporaryDirectory() as tmp:
        r = run_feff(with_scf(inp, mixing=FALLBACK_SCF_MIXING), tmp)
    row = {"id": rec["meta"]["id"], "ok": r.ok, "reason": r.reason, "seconds_default": rec["seconds"],
           "seconds_fallback": r.seconds}
    if r.ok:
        row.update(compare((ref[:, 0], ref[:, 3]), (r.energy, r.mu)))
    return row


def rerun_sites(job, description: str, per_element: int, out_default: str) -> list[dict]:
    """The shared driver of the SCF studies: parse ``--cache --per-element --workers --out``, run
    ``job`` on the picked library calculations, write ``rows.json`` under ``--out``, return the rows."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cache", default=".cache/feff")
    ap.add_argument("--per-element", type=int, default=per_element)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=out_default)
    a = ap.parse_args()
    entries = pick(Path(a.cache), a.per_element)
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(job, entries))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    rows = rerun_sites(job, __doc__.splitlines()[0], 2, "out/scf_mixing")
    print(f"SCF mixing {FALLBACK_SCF_MIXING} vs the default 0.2 on {len(rows)} library calculations that "
          "succeeded with 0.2 (post-edge normalized, E0-5..E0+45 eV)")
    print(f"{'id':24s} {'corr':>7s} {'max dev':>8s} {'E0 shift':>9s} {'s (0.2)':>8s} {'s (fallback)':>12s}")
    for r in rows:
        if r["ok"]:
            print(f"{r['id']:24s} {r['corr']:7.4f} {r['max_dev']:8.3f} {r['e0_shift']:9.2f} "
                  f"{r['seconds_default']:8.1f} {r['seconds_fallback']:12.1f}")
        else:
            print(f"{r['id']:24s} failed: {r['reason'][:60]}")
    ok = [r for r in rows if r["ok"]]
    if ok:
        c, d, s = (np.array([r[k] for r in ok]) for k in ("corr", "max_dev", "e0_shift"))
        print(f"own E0 each: median corr {np.median(c):.4f} (min {c.min():.4f}), median max dev {np.median(d):.3f} "
              f"(max {d.max():.3f}), median |E0 shift| {np.median(np.abs(s)):.2f} eV (max {np.abs(s).max():.2f})")
        c, d, s = (np.array([r[k] for r in ok]) for k in ("corr_best", "max_dev_best", "best_shift"))
        print(f"best shift:  median corr {np.median(c):.4f} (min {c.min():.4f}), median max dev {np.median(d):.3f} "
              f"(max {d.max():.3f}), |shift| max {np.abs(s).max():.2f} eV")


if __name__ == "__main__":
    main()
