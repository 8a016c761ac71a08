"""Which six-coordinate Cu sites a FEFF10-trained model misreads on FEFF 9 spectra: elongated ones.

The first-shell elongation of a site is the mean of its two longest Cu-O bonds over the mean of
its four shortest (the six nearest O within 3.2 Angstrom of the Materials Project structure; 1 for
a regular octahedron, ~1.2-1.4 for a Jahn-Teller-elongated Cu2+ one). The script

* compares the elongation of the six-coordinate (CrystalNN) Cu sites of OmniXAS (FEFF 9) with the
  project's six-coordinate Cu host sites (a substituted site's in the structure FEFF ran on: its
  planning shell rescaled by the recorded ``shell_scale``);
* trains one 200-tree forest (polynomial features, study normalization) on every project FEFF10 Cu
  spectrum and predicts the six-coordinate OmniXAS sites of parents it never saw, by elongation;
* counts how the build's planning shell (:func:`xanes_agent.data.hosts.first_shell`: O within
  1.2 x the shortest bond) counts the neighbours of the strongly elongated ones;
* for the other miss, four-coordinate FEFF 9 sites called six-coordinate, the share of square-planar
  ones (the largest O-Cu-O angle of the four nearest O above 150 degrees; else tetrahedral-like)
  among those called 4, those called 6, and the project's four-coordinate Cu host sites.

    python scripts/cu_elongation.py
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from xanes_agent.data.hosts import first_shell, largest_shell_angle, site_elongation
from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library
from xanes_agent.data.omnixas import SOURCE as OMNIXAS
from xanes_agent.data.omnixas import default_root
from xanes_agent.data.readers import read_poscar
from xanes_agent.models.features import make_featurizer, spectra_to_grid

ELONGATED = 1.2  # the planning shell's tolerance: beyond it the two long bonds fall out of the shell


@cache
def structure(material_id: str):
    return read_poscar(default_root() / material_id / "POSCAR")


def elongation(material_id: str, index: int, scale: float = 1.0) -> float:
    """Mean of the two longest over the mean of the four shortest of the six nearest Cu-O bonds
    (:func:`~xanes_agent.data.hosts.site_elongation`, the planning shell scaled by ``scale``)."""
    e = site_elongation(structure(material_id), index, scale)
    return float("nan") if e is None else e


def square_planar(material_id: str, index: int) -> bool | None:
    """Whether the four nearest O make a square-planar unit (largest O-Cu-O angle > 150 degrees);
    None with fewer than four O within 3.2 Angstrom."""
    s = structure(material_id)
    nbrs = sorted((n for n in s.get_neighbors(s[index], 3.2) if n.specie.symbol == "O"), key=lambda n: n.nn_distance)
    if len(nbrs) < 4:
        return None
    return largest_shell_angle(s, index, nbrs[:4]) > 150


def planar_share(name: str, flags) -> None:
    flags = [f for f in flags if f is not None]
    print(f"{name}: n={len(flags)}, square-planar {np.mean(flags):.2f}")


def describe(name: str, v) -> None:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    print(f"{name}: n={len(v)}, median {np.median(v):.3f} (quartiles {np.quantile(v, 0.25):.3f}-"
          f"{np.quantile(v, 0.75):.3f}), above 1.10: {np.mean(v > 1.10):.2f}, above {ELONGATED}: "
          f"{int(np.sum(v > ELONGATED))}")


def main() -> None:
    lib = load_bundled_library()
    omni = lib.where(source=OMNIXAS, element="Cu")
    proj = lib.where(source=PROJECT_SOURCE, element="Cu")
    o_prov = [json.loads(p) for p in omni.provenance.tolist()]
    p_prov = [json.loads(p) for p in proj.provenance.tolist()]
    six = [i for i, c in enumerate(omni.labels["coordination_number"]) if c == 6]
    o_el = {i: elongation(o_prov[i]["material_id"], o_prov[i]["absorber_index"]) for i in six}
    describe("OmniXAS FEFF 9 Cu, six-coordinate", list(o_el.values()))
    hosts = [p for p, c in zip(p_prov, proj.labels["coordination_number"]) if c == 6 and "parent" in p]
    n_family = sum(1 for p, c in zip(p_prov, proj.labels["coordination_number"]) if c == 6 and "parent" not in p)
    describe(f"project FEFF10 Cu host sites, six-coordinate (beside {n_family} family spectra)",
             [elongation(h["parent"], h["structure_params"]["site"], h.get("shell_scale", 1.0)) for h in hosts])

    feat = make_featurizer("polynomial")
    X, _ = spectra_to_grid(proj.energy, proj.mu)
    ok = np.isfinite(X).mean(axis=1) > 0.9
    forest = RandomForestClassifier(200, random_state=0, n_jobs=1)
    forest.fit(feat.transform(np.nan_to_num(X[ok])), proj.labels["coordination_number"][ok])
    seen = {p.get("parent") for p in p_prov}
    rows = [i for i in six if o_prov[i]["material_id"] not in seen]
    Xo, _ = spectra_to_grid([omni.energy[i] for i in rows], [omni.mu[i] for i in rows])
    good = np.isfinite(Xo).mean(axis=1) > 0.9
    pred = np.full(len(rows), np.nan)
    pred[good] = forest.predict(feat.transform(np.nan_to_num(Xo[good])))
    el = np.array([o_el[i] for i in rows])
    print(f"\nsix-coordinate FEFF 9 sites of parents the forest never saw: {len(rows)}, "
          f"called {dict(sorted(Counter(pred[good].astype(int).tolist()).items()))}")
    for k in (4, 5, 6):
        describe(f"  called {k}", el[pred == k])
    for lo, hi in ((0.0, 1.05), (1.05, 1.10), (1.10, 1.20), (1.20, np.inf)):
        m = (el >= lo) & (el < hi) & np.isfinite(pred)
        print(f"  elongation {lo:.2f}-{hi:.2f}: n={m.sum()}, called 4: {np.mean(pred[m] == 4):.2f}, "
              f"called 6: {np.mean(pred[m] == 6):.2f}")

    shells = Counter()
    for i, e in o_el.items():
        if e > ELONGATED:
            shell = first_shell(structure(o_prov[i]["material_id"]), o_prov[i]["absorber_index"])
            shells[len(shell) if shell is not None else "none"] += 1
    print(f"\nplanning shell of the six-coordinate FEFF 9 sites elongated beyond {ELONGATED}: "
          f"{dict(shells)} neighbours")

    four = [i for i, c in enumerate(omni.labels["coordination_number"])
            if c == 4 and o_prov[i]["material_id"] not in seen]
    X4, _ = spectra_to_grid([omni.energy[i] for i in four], [omni.mu[i] for i in four])
    ok4 = np.isfinite(X4).mean(axis=1) > 0.9
    called = np.full(len(four), np.nan)
    called[ok4] = forest.predict(feat.transform(np.nan_to_num(X4[ok4])))
    print(f"\nfour-coordinate FEFF 9 sites of parents the forest never saw: {len(four)}, "
          f"called {dict(sorted(Counter(called[ok4].astype(int).tolist()).items()))}")
    for k in (4, 6):
        planar_share(f"  called {k}", [square_planar(o_prov[i]["material_id"], o_prov[i]["absorber_index"])
                                       for i, c in zip(four, called) if c == k])
    planar_share("project FEFF10 Cu host sites, four-coordinate",
                 [square_planar(p["parent"], p["structure_params"]["site"])
                  for p, c in zip(p_prov, proj.labels["coordination_number"]) if c == 4 and "parent" in p])


if __name__ == "__main__":
    main()
