"""Compare the project's reduced FEFF10 parameter sets with the study-quality OmniXAS Cu spectra.

For N OmniXAS structures (deterministic choice: O-only anions, small cells, spread over the set) run
FEFF10 with each parameter set, then compare with the shipped FEFF 9.9.1 (MP-style) spectrum after
normalization (value at E0+50 eV = 1) and edge alignment (E0 = max derivative): Pearson
correlation, max |difference| and rms difference on the model window E0-5..E0+45 eV, plus the E0
shift and the time.

    python scripts/compare_feff_params.py --n 48 --sets reduced-v1 fast-noscf --out out/feff_compare

``--cached-only`` runs no FEFF and compares what the cache holds, so a long comparison can be
stopped and resumed (the same command without it continues where it stopped).

``--classify``: what the models make of each version. Cu forests (the study's settings, polynomial
features) trained on the project's FEFF10 spectra of parents other than the N structures predict CN
and mean first-shell distance from the OmniXAS spectrum and from each FEFF10 set's spectrum of the
same site; the table gives accuracy and MAE against the library's labels and how far each
version's answers are from those for the OmniXAS spectrum. A FEFF10 set whose answers match the
OmniXAS ones where ``reduced-v2``'s do not separates the parameter set from the code.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xanes_agent.data import read_poscar, read_xmu
from xanes_agent.data.feff import (
    LIBRARY_PARAMETERS,
    PARAMETER_SETS,
    FeffParameters,
    cached_result,
    feff_input,
    run_feff,
)
from xanes_agent.data.omnixas import iter_entries
from xanes_agent.foundation.normalization import post_edge_normalize


def choose(n: int) -> list:
    """``n`` OmniXAS entries, deterministic: every (len/144)-th entry that is a small (<= 24 sites)
    oxide without other anions, then the same from a half-step offset (so n = 24 keeps the first
    comparison's structures and a larger n only adds to them)."""
    picked = []
    entries = list(iter_entries())
    step = max(1, len(entries) // 144)
    for offset in (0, step // 2):
        for e in entries[offset::step]:
            s = read_poscar(e.poscar)
            elements = {el.symbol for el in s.composition.elements}
            if len(s) <= 24 and "O" in elements and not (
                elements & {"F", "Cl", "Br", "I", "S", "N", "Se", "Te", "P"}
            ):
                picked.append(e)
            if len(picked) == n:
                return picked
    return picked


GRID = np.linspace(-5, 45, 101)  # eV relative to E0: the models' window
SHIFTS = np.arange(-15.0, 15.0001, 0.1)  # eV: the search range of the best-overlap alignment


def normalized(energy, mu):
    nrm = post_edge_normalize(energy, mu)
    return nrm.energy, nrm.mu, nrm.e0


def compare(ref, new) -> dict:
    """Agreement of ``new`` with ``ref`` (both ``(energy, mu)``) on E0-5..E0+45 eV of ``ref``.

    Two alignments: each spectrum's own E0 (max derivative; what the models do), and the shift of
    ``new`` within +-15 eV that maximizes the correlation (separates a spectrum that differs from one
    whose edge finder picked another feature).
    """
    e_r, m_r, e0_r = normalized(*ref)
    e_n, m_n, e0_n = normalized(*new)
    a_ref = np.interp(GRID + e0_r, e_r, m_r, left=np.nan, right=np.nan)

    def at(shift):
        a_new = np.interp(GRID + shift, e_n, m_n, left=np.nan, right=np.nan)
        m = np.isfinite(a_ref) & np.isfinite(a_new)
        d = a_ref[m] - a_new[m]
        return float(np.corrcoef(a_ref[m], a_new[m])[0, 1]), float(np.max(np.abs(d))), float(np.sqrt(np.mean(d**2)))

    corr, dev, rms = at(e0_n)
    scan = [at(e0_r + d)[0] for d in SHIFTS]
    best = int(np.nanargmax(scan))
    corr_b, dev_b, _ = at(e0_r + SHIFTS[best])
    return {"corr": corr, "max_dev": dev, "rms": rms, "e0_shift": float(e0_n - e0_r), "corr_best": corr_b,
            "max_dev_best": dev_b, "best_shift": float(SHIFTS[best])}


def job(entry, params: FeffParameters, cache, cached_only: bool = False):
    s = read_poscar(entry.poscar)
    inp = feff_input(s, entry.site, params, title=f"{entry.material_id} site {entry.site}")
    t = time.perf_counter()
    r = (cached_result(inp, cache) if cached_only else
         run_feff(inp, cache, meta={"material_id": entry.material_id, "site": entry.site}))
    return entry, params.name, r, time.perf_counter() - t


def probe(what: str, radius: float) -> FeffParameters:
    """The library's set with one radius (A) changed, the cluster grown to hold it: ``"fms"``, full
    multiple scattering (OmniXAS ran FEFF 9 over 9 A, the library 4.5 A; 7.5 A cost ~30x the
    library's time a site here), or ``"scf"``, the self-consistent potentials that set the edge and
    white line (7 against 3 A; 4.5 A cost 2-5x), where FEFF10 and FEFF 9 part (``code_energy_scale.py``)."""
    return replace(LIBRARY_PARAMETERS, name=f"{LIBRARY_PARAMETERS.name}-{what}{radius:g}",
                   cluster_radius=max(LIBRARY_PARAMETERS.cluster_radius, radius + 1.0), spectra_as=(),
                   **{f"{what}_radius": radius})


def probe_corehole(kind: str) -> FeffParameters:
    """The library's set with the core-hole treatment changed: OmniXAS ran FEFF 9 with ``RPA`` (a
    core hole screened in linear response, "screened core-hole" in its headers), the library
    ``FSR`` (final-state rule: the full core hole, screened only by the SCF), which deepens the
    edge's features and raises the white line, where the two codes' spectra part."""
    return replace(LIBRARY_PARAMETERS, name=f"{LIBRARY_PARAMETERS.name}-corehole{kind}", corehole=kind, spectra_as=())


def summary(rows: list[dict], set_name: str, against: str) -> str:
    rs = [r for r in rows if r["set"] == set_name and r["against"] == against]
    ok = [r for r in rs if r["ok"]]
    t = np.array([r["seconds"] for r in rs if r["seconds"] is not None])
    head = f"{set_name:18s} {against:18s} {len(rs):5d} {len(ok):5d} {np.median(t) if len(t) else np.nan:9.1f}"
    if not ok:
        return head
    col = {k: np.array([r[k] for r in ok]) for k in ("corr", "max_dev", "rms", "e0_shift", "corr_best",
                                                      "max_dev_best", "best_shift")}
    return (f"{head} {np.median(col['corr']):9.3f} {np.percentile(col['corr'], 10):9.3f} "
            f"{np.median(col['max_dev']):8.3f} {np.median(col['rms']):8.3f} {np.median(col['e0_shift']):9.2f} "
            f"{np.median(col['corr_best']):10.3f} {np.percentile(col['corr_best'], 10):10.3f} "
            f"{np.median(col['max_dev_best']):9.3f} {np.median(col['best_shift']):8.2f}")


def plot(rows, spectra, out: Path, set_name: str = "reduced-v1") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = sorted((r for r in rows if r["set"] == set_name and r["against"] == "omnixas-feff9" and r["ok"]),
                key=lambda r: r["corr"])
    if not ok:
        return
    picks = [ok[0], ok[1], ok[len(ok) // 4], ok[len(ok) // 2], ok[(3 * len(ok)) // 4], ok[-1]]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharey=True)
    for ax, r in zip(axes.flat, picks, strict=True):
        key = (r["material_id"], r["site"])
        ref = spectra[key]["omnixas-feff9"]
        e_r, m_r, e0_r = normalized(*ref)
        ax.plot(e_r - e0_r, m_r, "k", lw=2, label="OmniXAS FEFF 9.9.1 (MP set)")
        for k, name in enumerate(sorted(n for n in spectra[key] if n != "omnixas-feff9")):
            e_n, m_n, _ = normalized(*spectra[key][name])
            shift = compare(ref, spectra[key][name])["best_shift"]  # drawn at its best overlap
            ax.plot(e_n - shift - e0_r, m_n, f"C{k}-", label=f"FEFF10 {name} (best shift)")
        ax.set_xlim(-15, 55)
        ax.set_title(f"{r['material_id']} site {r['site']}: r = {r['corr']:.2f} own E0, {r['corr_best']:.2f} "
                     f"shifted {r['best_shift']:+.1f} eV", fontsize=9)
        ax.set_xlabel("E - E0 of the OmniXAS spectrum (eV)")
    axes[0, 0].set_ylabel("normalized mu")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Cu K-edge: FEFF10 {set_name} vs shipped OmniXAS spectra (two worst, quartiles, best "
                 "by the own-E0 correlation)")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--sets", nargs="+", default=["reduced-v1", "fast-noscf"])
    ap.add_argument("--n-full", type=int, default=0,
                    help="also run the full MP set (mp-xanes, minutes a site) on the first N structures")
    ap.add_argument("--probe-fms", type=float, nargs="*", default=[], metavar="A",
                    help="also run the library's set with the FMS radius set to each of these (A)")
    ap.add_argument("--probe-scf", type=float, nargs="*", default=[], metavar="A",
                    help="also run the library's set with the SCF radius set to each of these (A)")
    ap.add_argument("--probe-corehole", nargs="*", default=[], metavar="KIND",
                    help="also run the library's set with this core-hole treatment (RPA: OmniXAS's; the library: FSR)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cached-only", action="store_true",
                    help="run no FEFF: compare what the cache holds (a comparison still running, or stopped)")
    ap.add_argument("--cache", default=".cache/feff")
    ap.add_argument("--out", default="out/feff_compare")
    ap.add_argument("--classify", action="store_true",
                    help="also predict CN and distance from every version with Cu forests of other parents")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = choose(a.n)
    sets = {name: PARAMETER_SETS[name] for name in a.sets}
    for what, radii in (("fms", a.probe_fms), ("scf", a.probe_scf)):
        sets.update({p.name: p for p in (probe(what, r) for r in radii)})
    sets.update({p.name: p for p in map(probe_corehole, a.probe_corehole)})
    a.sets = list(sets)
    work = ([(e, PARAMETER_SETS["mp-xanes"]) for e in entries[: a.n_full]]
            + [(e, p) for e in entries for p in sets.values()])
    spectra: dict = {}
    results = []
    with ProcessPoolExecutor(a.workers) as pool:
        futs = [pool.submit(job, e, s, a.cache, a.cached_only) for e, s in work]
        for f in tqdm(as_completed(futs), total=len(futs), desc="FEFF10 vs OmniXAS"):
            entry, set_name, r, _ = f.result()
            if r is None:  # --cached-only, and not computed yet
                continue
            key = (entry.material_id, entry.site)
            if key not in spectra:
                ref = read_xmu(entry.xmu, element="Cu")
                spectra[key] = {"omnixas-feff9": (ref.energy, ref.mu)}
            if r.ok:
                spectra[key][set_name] = (r.energy, r.mu)
            results.append((key, set_name, r))
    rows = []
    for key, set_name, r in results:
        for against in ("omnixas-feff9", "mp-xanes"):
            if against == set_name or against not in spectra[key]:  # the OmniXAS one always is
                continue
            row = {"material_id": key[0], "site": key[1], "set": set_name, "against": against, "ok": r.ok,
                   "reason": r.reason, "seconds": r.seconds if against == "omnixas-feff9" else None}
            if r.ok:
                row.update(compare(spectra[key][against], spectra[key][set_name]))
            rows.append(row)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(f"{len(entries)} OmniXAS Cu structures; corr/max dev on E0-5..E0+45 eV after post-edge normalization; "
          f"'best' = shift within +-15 eV that maximizes the correlation")
    print(f"{'set':18s} {'against':18s} {'tried':>5s} {'ok':>5s} {'sec/site':>9s} {'corr med':>9s} {'corr p10':>9s} "
          f"{'dev med':>8s} {'rms med':>8s} {'E0 shift':>9s} {'best corr':>10s} {'best p10':>10s} {'best dev':>9s} "
          f"{'shift':>8s}")
    for s in (["mp-xanes"] if a.n_full else []) + a.sets:
        for against in ("omnixas-feff9", "mp-xanes"):
            if s != against and any(r["set"] == s and r["against"] == against for r in rows):
                print(summary(rows, s, against))
    plot(rows, spectra, out, a.sets[0])
    if a.classify:
        classify(spectra, ["omnixas-feff9"] + (["mp-xanes"] if a.n_full else []) + a.sets)


def classify(spectra: dict, versions: list[str], trees: int = 500) -> None:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, parent_groups
    from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE
    from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, spectra_to_grid

    lib = load_bundled_library()
    feat = make_featurizer("polynomial", DEFAULT_GRID)
    train = lib.where(source=PROJECT_SOURCE, element="Cu")
    mids = {mid for mid, _ in spectra}
    keep = ~np.isin(parent_groups(train), sorted(mids))
    X, _ = spectra_to_grid(train.energy[keep], train.mu[keep], DEFAULT_GRID)
    cn, d = train.labels["coordination_number"][keep], train.labels["mean_nn_distance"][keep]
    ok = np.isfinite(X).all(axis=1) & np.isin(cn, (4, 5, 6)) & np.isfinite(d)
    F = feat.transform(X[ok])
    cn_model = RandomForestClassifier(trees, random_state=0, n_jobs=-1, class_weight="balanced").fit(F, cn[ok])
    d_model = RandomForestRegressor(trees, random_state=0, n_jobs=-1).fit(F, d[ok])
    ref = lib.where(source=OMNIXAS_SOURCE)
    row_of = {i: k for k, i in enumerate(ref.ids)}
    keys = [k for k in spectra if all(v in spectra[k] for v in versions) and f"{k[0]}/{k[1]}" in row_of]
    rows = [row_of[f"{m}/{s}"] for m, s in keys]
    true_cn, true_d = ref.labels["coordination_number"][rows], ref.labels["mean_nn_distance"][rows]
    pred = {}
    for v in versions:
        Xv, _ = spectra_to_grid([spectra[k][v][0] for k in keys], [spectra[k][v][1] for k in keys], DEFAULT_GRID)
        Fv = feat.transform(np.nan_to_num(Xv))  # a window edge short of the grid reads as 0, for every version
        pred[v] = cn_model.predict(Fv), d_model.predict(Fv)
    print(f"\nCu forests trained on {ok.sum()} project FEFF10 spectra of other parents; {len(keys)} sites "
          f"computed in every version")
    print(f"{'spectrum':14s} {'CN right':>9s} {'d MAE A':>8s} {'CN as OmniXAS':>14s} {'|d - d OmniXAS| A':>18s}")
    for v in versions:
        c, dd = pred[v]
        print(f"{v:14s} {int((c == true_cn).sum()):4d}/{len(keys):<4d} {np.mean(np.abs(dd - true_d)):8.3f} "
              f"{int((c == pred['omnixas-feff9'][0]).sum()):8d}/{len(keys):<5d} "
              f"{np.mean(np.abs(dd - pred['omnixas-feff9'][1])):18.3f}")


if __name__ == "__main__":
    main()
