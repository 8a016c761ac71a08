"""Does the core-hole treatment part the library's FEFF10 spectra from the OmniXAS FEFF 9 ones?

The library computes with the final-state rule's full core hole (``COREHOLE FSR``, ``reduced-v2``);
the OmniXAS (Materials Project-style) FEFF 9 Cu spectra were computed with the core hole screened
in linear response (``RPA``). ``scripts/compare_feff_params.py --probe-corehole RPA`` showed the
RPA spectra of 12 OmniXAS sites much closer to the shipped ones; this script asks what that does to
a model: it computes the library's own Cu sites again with ``reduced-v2-rpa`` (a random order,
seed 0, resumable through the FEFF cache), then, on the sites done both ways, trains the models'
configuration (as ``benchmarks/transfer.py`` mirrors them) on the FSR spectra, on the RPA spectra,
and on both (and, as a library that gains RPA spectra site by site would train: every FSR
library site with and without the RPA ones), and scores each on the OmniXAS FEFF 9 Cu spectra of
other parents (5 folds by parent structure, CN 4/5/6 sites), beside the rms difference of the two
treatments' spectra and of each from the FEFF 9 spectrum of the same native site.

    python scripts/corehole_transfer.py [--n 400] [--time-budget SECONDS] [--cached-only]
                                        [--workers 2] [--out out/corehole]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import code_energy_scale  # noqa: E402  (this folder: native sites held by both codes, per band of E - E0)
import transfer  # noqa: E402  (benchmarks/transfer.py: the models' configuration under transfer)

from xanes_agent.data.feff import REDUCED_RPA_PARAMETERS, REDUCED_V2_PARAMETERS  # noqa: E402
from xanes_agent.data.hosts import plan  # noqa: E402
from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, results_local, spectrum_set  # noqa: E402
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE  # noqa: E402
from xanes_agent.data.structures import generate  # noqa: E402
from xanes_agent.models.evaluation import EvalConfig  # noqa: E402
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, spectra_to_grid  # noqa: E402


def models_config(feat) -> EvalConfig:
    """The bundled models' configuration as ``benchmarks/transfer.py --features pointwise
    --edge-view 8 --neighbour-vote 0.25 --regressor-trees extra`` runs it."""
    cfg = EvalConfig(n_estimators=100, neighbour_vote=0.25, voters="parent", regressor_trees="extra",
                     vote_grid=DEFAULT_GRID)
    return transfer.with_edge_view(cfg, feat, 8.0)


def rms_on_window(a, b) -> np.ndarray:
    """Per site, rms difference (edge-step units) of two collections' spectra on the model grid."""
    Xa, _ = spectra_to_grid(a.energy, a.mu, DEFAULT_GRID)
    Xb, _ = spectra_to_grid(b.energy, b.mu, DEFAULT_GRID)
    return np.sqrt(np.nanmean((Xa - Xb) ** 2, axis=1))


def against_omnixas(fsr, rpa, omni) -> list[str]:
    """Per band of E - E0, rms / mean difference from the OmniXAS FEFF 9 spectrum of the same native
    site (each spectrum on its own E0), for both core-hole treatments; and the white lines."""
    window = code_energy_scale.WINDOW
    pairs = code_energy_scale.pairs(fsr, omni)
    if not pairs:
        return ["no native site computed both ways"]
    ref = np.array([code_energy_scale.relative(omni, j)(window) for _, j in pairs])
    lines = [f"{len(pairs)} native Cu sites also in OmniXAS; per band of E - E0 (eV), rms / mean difference from "
             "FEFF 9 (edge-step units):", f"{'band':>10s} {'FSR':>15s} {'RPA':>15s}"]
    d = {name: np.array([code_energy_scale.relative(c, i)(window) for i, _ in pairs]) - ref
         for name, c in (("FSR", fsr), ("RPA", rpa))}
    for lo, hi in code_energy_scale.BANDS:
        m = (window >= lo) & (window < hi)
        lines.append(f"{lo:+4d}..{hi:+3d} " + " ".join(f"{np.sqrt(np.mean(v[:, m] ** 2)):7.3f} / {v[:, m].mean():+.3f}"
                                                   for v in d.values()))
    whole = {k: np.median(np.sqrt(np.mean(v ** 2, axis=1))) for k, v in d.items()}
    top = {k: np.median(np.max(v + ref, axis=1)) for k, v in d.items()}
    lines.append(f"median rms per site: FSR {whole['FSR']:.3f}, RPA {whole['RPA']:.3f}; white line (median maximum): "
                 f"FSR {top['FSR']:.2f}, RPA {top['RPA']:.2f}, FEFF 9 {np.median(ref.max(axis=1)):.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="library Cu sites to compute with RPA (random order)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-budget", type=float, default=None, help="stop submitting FEFF runs after this long (s)")
    ap.add_argument("--cached-only", action="store_true", help="run no FEFF: score the sites the cache holds")
    ap.add_argument("--cache", default=".cache/feff")
    ap.add_argument("--augment", default="regressors", choices=("none", "regressors"),
                    help="experiment-like copies for the regressors (the models') or none")
    ap.add_argument("--no-models", action="store_true", help="compare the spectra only (no forests)")
    ap.add_argument("--out", default="out/corehole")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    lib = load_bundled_library()
    cu = lib.where(source=PROJECT_SOURCE, element="Cu")
    # the library's FSR spectra (it holds RPA ones too since session 37; those are what is computed here)
    cu = cu[np.array([spectrum_set(p) in REDUCED_V2_PARAMETERS.spectra_of for p in cu.provenance.tolist()], dtype=bool)]
    order = np.random.default_rng(0).permutation(len(cu))[: a.n]
    gens = {g.id: g for g in [*generate(["Cu"], 400), *plan(["Cu"], 4000)]}
    chosen = [cu.ids[i] for i in order if cu.ids[i] in gens]
    print(f"{len(chosen)} of the library's {len(cu)} Cu sites, computed with {REDUCED_RPA_PARAMETERS.name}", flush=True)
    got = {}
    for r in results_local({i: gens[i] for i in chosen}, REDUCED_RPA_PARAMETERS, Path(a.cache), a.workers,
                            a.time_budget, a.cached_only, progress=True):
        if r.get("ok"):
            got[r["id"]] = (r["energy"], r["mu"])
    rows = np.array([cu.index_of(i) for i in chosen if i in got], dtype=int)
    fsr = cu[rows]
    energy, mu = np.empty(len(fsr), dtype=object), np.empty(len(fsr), dtype=object)  # one array a spectrum
    for k, i in enumerate(fsr.ids.tolist()):
        energy[k], mu[k] = got[i]
    rpa = replace(fsr, energy=energy, mu=mu)  # the same sites, labels and parents: only the spectra differ
    rms = rms_on_window(fsr, rpa)
    print(f"{len(rows)} sites both ways; rms FSR - RPA on the model window (edge-step units): median "
          f"{np.nanmedian(rms):.3f}, p90 {np.nanpercentile(rms, 90):.3f}", flush=True)

    omni = lib.where(source=OMNIXAS_SOURCE, element="Cu")
    bands = against_omnixas(fsr, rpa, omni)
    print("\n".join(bands), flush=True)
    if a.no_models:
        return

    feat = make_featurizer("pointwise", DEFAULT_GRID)
    cfg = models_config(feat)
    p_omni = transfer.Prepared(omni, feat, "none")
    both = type(fsr).concatenate([fsr, rpa])
    record = {"n_sites": int(len(rows)), "rms_median": float(np.nanmedian(rms))}
    lines = [transfer.HEADER]
    runs = (("FSR (library)", fsr), ("RPA", rpa), ("FSR + RPA", both), (f"FSR, all {len(cu)} library sites", cu),
            ("FSR, all library sites, + RPA", type(cu).concatenate([cu, rpa])))
    for name, train in runs:
        prep = transfer.Prepared(train, feat, a.augment, copies=1)
        s = transfer.scored(p_omni, transfer.across(prep, p_omni, 5, cfg), in_scope=True)
        lines.append(transfer._row(f"Cu {name} -> OmniXAS FEFF9, CN 4/5/6 sites", s, len(np.unique(p_omni.groups))))
        record[name] = {k: v for k, v in s.metrics.items() if not isinstance(v, dict)}
        record[name]["confusion"] = s.confusion.tolist() if s.confusion is not None else None
        print(lines[-1], flush=True)
    (out / "corehole.md").write_text("\n".join([*lines, "", *bands]) + "\n")
    (out / "corehole.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out}/corehole.md, corehole.json")


if __name__ == "__main__":
    main()
