"""Is the Cu cross-code CN miss a label problem? CrystalNN's confidence in its own label.

CrystalNN (the labeller of every library spectrum) weighs each candidate coordination number of a
site; the label is the heaviest. Where the weights split (an elongated octahedron between 4 and 6,
a distorted pyramid between 5 and 6) the label itself is uncertain, and a spectrum model cannot be
more certain than it. The script

* computes the weight of the labelled CN, normalized over the candidates, for every OmniXAS FEFF 9
  Cu site of a parent the project's FEFF10 Cu spectra lack, and for every project Cu spectrum (in
  the structure FEFF ran on: a family's generated structure, a host site's materialized one);
* scores one forest per training rule on those FEFF 9 sites (3 seeds x 100 trees, polynomial
  features, study normalization, classes balanced), by the label's confidence:
  hard labels; hard labels weighted by their confidence; the ambiguous ones (< 0.6) left out;
  soft labels (each spectrum once per candidate CN, weighted by CrystalNN's weight).

    python scripts/cu_label_confidence.py          # ~2-3 min on one core
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score

from xanes_agent.data import hosts, structures
from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library
from xanes_agent.data.omnixas import SOURCE as OMNIXAS
from xanes_agent.data.omnixas import default_root
from xanes_agent.data.readers import read_poscar
from xanes_agent.models.features import make_featurizer, spectra_to_grid

BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01))


@cache
def poscar(material_id: str):
    return read_poscar(default_root() / material_id / "POSCAR")


def cn_weights(structure, index: int) -> dict[int, float]:
    """CrystalNN's weight of each candidate coordination number of a site, summing to 1."""
    from pymatgen.analysis.local_env import CrystalNN

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = CrystalNN().get_nn_data(structure, index).cn_weights
    total = sum(w.values())
    return {int(c): v / total for c, v in w.items()}


def grid_features(lib, rows, feat):
    X, _ = spectra_to_grid([lib.energy[i] for i in rows], [lib.mu[i] for i in rows])
    return feat.transform(np.nan_to_num(X)), np.isfinite(X).mean(axis=1) > 0.9


def main() -> None:
    lib = load_bundled_library()
    omni = lib.where(source=OMNIXAS, element="Cu")
    proj = lib.where(source=PROJECT_SOURCE, element="Cu")
    o_prov = [json.loads(p) for p in omni.provenance.tolist()]
    seen = {json.loads(p).get("parent") for p in proj.provenance.tolist()}
    rows = [i for i, p in enumerate(o_prov) if p["material_id"] not in seen]
    y = omni.labels["coordination_number"][rows]
    w_test = np.array([cn_weights(poscar(o_prov[i]["material_id"]), o_prov[i]["absorber_index"]).get(int(c), 0.0)
                       for i, c in zip(rows, y)])

    sites = {s.id: s for s in hosts.all_sites(("Cu",))}
    families = {g.id: g for g in structures.generate(["Cu"], 308)}
    conf = []
    for i in proj.ids.tolist():
        g = families[i] if i in families else sites[i].materialize()
        conf.append(cn_weights(g.structure, g.absorber_index))
    yt = proj.labels["coordination_number"]
    w_train = np.array([c.get(int(k), 0.0) for c, k in zip(conf, yt)])

    feat = make_featurizer("polynomial")
    F, ok = grid_features(proj, range(len(proj.ids)), feat)
    Fo, good = grid_features(omni, rows, feat)
    m = good & np.isin(y, (4, 5, 6))
    print(f"FEFF 9 Cu sites of parents the project lacks: {m.sum()}; the label's CrystalNN weight:")
    for lo, hi in BINS:
        s = m & (w_test >= lo) & (w_test < hi)
        print(f"  {lo:.1f}-{min(hi, 1):.1f}: {s.sum()} sites ({s.sum() / m.sum():.0%})")
    print(f"project FEFF10 Cu spectra: {ok.sum()}, label weight below 0.7: {np.mean(w_train[ok] < 0.7):.0%}")

    F, Y, W, C = F[ok], yt[ok], w_train[ok], [c for c, o in zip(conf, ok) if o]
    soft = [(f, cn, v) for f, c in zip(F, C) for cn, v in c.items() if cn in (4, 5, 6) and v >= 0.05]
    sf, sy, sw = (np.array(v) for v in zip(*soft))
    rules = {
        "hard labels": lambda f: f.fit(F, Y),
        "hard, weighted by the label's confidence": lambda f: f.fit(F, Y, sample_weight=W),
        "hard, labels below 0.6 left out": lambda f: f.fit(F[W >= 0.6], Y[W >= 0.6]),
        "soft labels (CrystalNN's weights)": lambda f: f.fit(sf, sy, sample_weight=sw),
    }
    print("\n| training rule | balanced acc. (3 seeds) | acc. | balanced, label weight "
          + " | ".join(f"{lo:.1f}-{min(hi, 1):.1f}" for lo, hi in BINS) + " |")
    print("|---|---|---|" + "---|" * len(BINS))
    for name, fit in rules.items():
        res = []
        for seed in range(3):
            forest = RandomForestClassifier(100, random_state=seed, n_jobs=1, class_weight="balanced")
            fit(forest)
            p = forest.predict(Fo)
            by_bin = [balanced_accuracy_score(y[s], p[s]) for lo, hi in BINS
                      for s in [m & (w_test >= lo) & (w_test < hi)]]
            res.append([balanced_accuracy_score(y[m], p[m]), np.mean(p[m] == y[m]), *by_bin])
        r = np.array(res)
        print(f"| {name} | {r[:, 0].mean():.3f} +- {r[:, 0].std():.3f} | {r[:, 1].mean():.3f} | "
              + " | ".join(f"{v:.2f}" for v in r[:, 2:].mean(axis=0)) + " |")


if __name__ == "__main__":
    main()
