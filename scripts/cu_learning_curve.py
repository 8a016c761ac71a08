"""Is the Cu CN gap one of size or of code? A learning curve on the OmniXAS FEFF 9 Cu spectra.

    python scripts/cu_learning_curve.py [--repeats 3] [--trees 300]

The OmniXAS set holds ~4,700 FEFF 9 Cu spectra of real Materials Project structures; the project
~500 FEFF10 Cu spectra (prototype families and host sites). Balanced CN accuracy (4/5/6) of a
random forest on polynomial features (class-balanced, scikit-learn), always on parent structures
the training set does not contain:

* within FEFF 9: trained on N spectra, tested on a fifth of the parents held out;
* FEFF 9 -> FEFF10: trained on N FEFF 9 spectra, tested on the project's FEFF10 spectra of
  parents FEFF 9 lacks (nearly all of them prototype families: the hosts are OmniXAS parents);
* FEFF10 -> FEFF 9: all project spectra (or its host sites, or its families only) against the
  FEFF 9 spectra of parents the project does not hold;
* FEFF10 -> FEFF 9 by size (``--project-fractions``): the families and a random share of the
  project's host parent structures (all their spectra), against the same FEFF 9 spectra: how the
  cross-code figure grows with the real structures the build adds, to say what more FEFF10 hours
  would buy.

The same N in both directions separates what more spectra would buy from what the codes (and
their parameter sets) differ by.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, parent_groups
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE
from xanes_agent.foundation.normalization import NORMALIZATIONS
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer, spectra_to_grid


def prepare(coll, featurizer, normalization: str = "post_edge"):
    X, e0 = spectra_to_grid(coll.energy, coll.mu, DEFAULT_GRID, normalization=normalization)
    cn = coll.labels["coordination_number"]
    ok = np.isfinite(e0) & np.isfinite(X).all(axis=1) & np.isin(cn, (4, 5, 6))
    return featurizer.transform(X[ok]), cn[ok], parent_groups(coll)[ok]


def score(F_train, y_train, F_test, y_test, trees: int) -> float:
    forest = RandomForestClassifier(trees, n_jobs=-1, random_state=0, class_weight="balanced")
    return float(balanced_accuracy_score(y_test, forest.fit(F_train, y_train).predict(F_test)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--sizes", type=int, nargs="*", default=[250, 500, 1000, 2000, 3000],
                    help="FEFF 9 training sizes for the within-FEFF 9 curve (none: skip it)")
    ap.add_argument("--project-fractions", type=float, nargs="*", default=[0.25, 0.5, 0.75, 1.0],
                    help="shares of the project's host parents for the FEFF10 -> FEFF 9 curve (none: skip it)")
    ap.add_argument("--normalization", default="post_edge", choices=NORMALIZATIONS)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    lib = load_bundled_library()
    feat = make_featurizer("polynomial", DEFAULT_GRID)
    Fp, yp, gp = prepare(lib.where(source=PROJECT_SOURCE, element="Cu"), feat, a.normalization)
    Fo, yo, go = prepare(lib.where(source=OMNIXAS_SOURCE, element="Cu"), feat, a.normalization)
    p_new, o_new = ~np.isin(gp, go), ~np.isin(go, gp)  # parents the other set does not hold
    hosts = np.array([not g.startswith("family:") for g in gp])
    rng = np.random.default_rng(0)
    parents = np.unique(go[o_new])
    rng.shuffle(parents)
    held = o_new & np.isin(go, parents[: len(parents) // 5])
    pool = np.flatnonzero(o_new & ~held)
    print(f"FEFF 9 Cu spectra {len(Fo)} ({o_new.sum()} of parents the project lacks; {held.sum()} held out "
          f"within FEFF 9), project FEFF10 Cu spectra {len(Fp)} ({hosts.sum()} host sites)")
    print(f"| training spectra (FEFF 9) | within FEFF 9, new parents | FEFF 9 -> FEFF10, new parents "
          f"({(p_new & ~hosts).sum()} family and {(p_new & hosts).sum()} host-site spectra) |")
    print("|---|---|---|")
    for n in a.sizes:
        if n > len(pool):
            continue
        within, across = [], []
        for _ in range(a.repeats):
            rows = rng.choice(pool, n, replace=False)
            within.append(score(Fo[rows], yo[rows], Fo[held], yo[held], a.trees))
            across.append(score(Fo[rows], yo[rows], Fp[p_new], yp[p_new], a.trees))
        cells = [f"{np.mean(v):.2f} +- {np.std(v):.2f}" for v in (within, across)]
        print(f"| {n} | {cells[0]} | {cells[1]} |", flush=True)
    # the project's host sites sit in OmniXAS parents: train on all of them, test on the others
    print(f"FEFF10 -> FEFF 9 (all {len(Fp)} project spectra, tested on the {o_new.sum()} FEFF 9 spectra of "
          f"other parents): {score(Fp, yp, Fo[o_new], yo[o_new], a.trees):.2f}; host sites only "
          f"({hosts.sum()}): {score(Fp[hosts], yp[hosts], Fo[o_new], yo[o_new], a.trees):.2f}; "
          f"families only ({(~hosts).sum()}): {score(Fp[~hosts], yp[~hosts], Fo[o_new], yo[o_new], a.trees):.2f}")
    if a.project_fractions:
        host_parents = np.unique(gp[hosts])
        print(f"| share of the {len(host_parents)} project host parents | host spectra | FEFF10 -> FEFF 9, "
              f"{o_new.sum()} spectra of other parents |")
        print("|---|---|---|")
        for share in a.project_fractions:
            runs, sizes = [], []
            for _ in range(a.repeats if share < 1 else 1):
                pick = rng.choice(host_parents, int(round(share * len(host_parents))), replace=False)
                rows = ~hosts | np.isin(gp, pick)
                sizes.append(int((rows & hosts).sum()))
                runs.append(score(Fp[rows], yp[rows], Fo[o_new], yo[o_new], a.trees))
            print(f"| {share:.2f} | {np.mean(sizes):.0f} | {np.mean(runs):.2f} +- {np.std(runs):.2f} |", flush=True)


if __name__ == "__main__":
    main()
