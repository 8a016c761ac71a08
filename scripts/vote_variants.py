"""Who votes, how many, and how much: the CN vote's variants on the same folds, forests fitted once.

    python scripts/vote_variants.py [--elements Ti V ...] [--variants "parent k5" ...] > out/vote_variants.txt

Per element (project FEFF10 spectra, polynomial features; one forest of 100 trees per fold, as
``benchmarks/transfer.py`` trains), the CN balanced accuracy of ``(1 - share) forests + share vote``
for votes by spectrum (5 nearest) and by parent structure (3, 5, 8 nearest; each parent once per
CN, :class:`~xanes_agent.models.neighbours.NeighbourVote`), and by parent (5 nearest) on spectra
blurred by a Gaussian of 2 or 4 eV FWHM before the distances are taken (the prototype families are
sharper than real sites of the same CN, session 29: blurred, a held-out family might find its
class among the hosts), at shares 0-1, on three hold-outs: each
structure type left out with hosts in training (the transfer benchmark's "families left out, hosts
in training"), parent structures in 5 folds, and for Cu FEFF10 -> OmniXAS FEFF 9 spectra (parents
kept apart). Every variant is scored on the same forest probabilities, so the table compares the
votes alone; the benchmark itself then confirms a choice (session 28, docs/models.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, type_groups, with_structure_types
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE
from xanes_agent.foundation.edges import ELEMENTS
from xanes_agent.models.ensemble import SeedEnsembleClassifier
from xanes_agent.models.evaluation import CN_CLASSES, group_folds
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer
from xanes_agent.models.neighbours import NeighbourVote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from transfer import Prepared  # noqa: E402  (the benchmark's own preparation of spectra and features)

CLASSES = np.array(CN_CLASSES, float)
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: name -> (each parent once, k nearest, blur FWHM in eV of the spectra the distances are taken on)
VARIANTS = {"spectrum k5": (False, 5, 0.0), "parent k3": (True, 3, 0.0), "parent k5": (True, 5, 0.0),
            "parent k8": (True, 8, 0.0), "parent k5 blur 2": (True, 5, 2.0), "parent k5 blur 4": (True, 5, 4.0)}


def fold_probas(train: Prepared, tr: np.ndarray, test: Prepared, te: np.ndarray, variants: list[str]
                ) -> dict[str, np.ndarray]:
    y = train.labels["coordination_number"][tr]
    clf = SeedEnsembleClassifier(n_seeds=1, n_estimators=100, random_state=0, n_jobs=-1).fit(train.F[tr], y.astype(int))
    out = {"forests": clf.predict_proba(test.F[te])}
    for name in variants:
        by_parent, k, blur = VARIANTS[name]
        vote = NeighbourVote.fit(train.X[tr], y, CLASSES, 1.0, k=k, parents=train.groups[tr] if by_parent else None,
                                 blur=blur, grid=DEFAULT_GRID)
        out[name] = vote.proba(test.X[te])
    return out


def held_out(folds: list[tuple[np.ndarray, np.ndarray]], train: Prepared, test: Prepared, n: int,
             variants: list[str]):
    """Each variant's probabilities for the test rows of every (train rows, test rows) fold."""
    P: dict[str, np.ndarray] = {}
    for tr, te in folds:
        for k, v in fold_probas(train, tr, test, te, variants).items():
            P.setdefault(k, np.full((n, len(CLASSES)), np.nan))[te] = v
    return P


def scores(y: np.ndarray, P: dict[str, np.ndarray], variants: list[str]) -> dict[tuple[str, float], float]:
    return {(name, s): balanced_accuracy_score(y, CLASSES[((1 - s) * P["forests"] + s * P[name]).argmax(axis=1)])
            for name in variants for s in SHARES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", nargs="+", default=list(ELEMENTS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args()
    lib = with_structure_types(load_bundled_library())
    feat = make_featurizer("polynomial", DEFAULT_GRID)
    results: dict[str, dict[tuple[str, float], list[float]]] = {}
    for el in a.elements:
        sub = lib.where(source=PROJECT_SOURCE, element=el)
        prep = Prepared(sub, feat, augment=False)
        y = prep.labels["coordination_number"]
        good = prep.ok & np.isin(y, CN_CLASSES)
        types = type_groups(sub)
        fam = np.flatnonzero(good & np.char.startswith(prep.groups.astype(str), "family:"))
        sets = {"type out, hosts in training": (
            [(np.flatnonzero(good & (types != t)), fam[types[fam] == t]) for t in np.unique(types[fam])], prep, fam)}
        folds = group_folds(prep.groups, 5)
        rows = np.flatnonzero(good)
        sets["parents out"] = ([(np.flatnonzero(good & (folds != f)), np.flatnonzero(good & (folds == f)))
                                for f in range(5)], prep, rows)
        if el == "Cu":
            omni = Prepared(lib.where(source=OMNIXAS_SOURCE, element="Cu"), feat, augment=False)
            yo = omni.labels["coordination_number"]
            good_o = omni.ok & np.isin(yo, CN_CLASSES)
            fo = group_folds(omni.groups, 5)  # a parent's fold is the same in both sets
            sets["FEFF10 -> FEFF 9"] = ([(np.flatnonzero(good & (folds != f)), np.flatnonzero(good_o & (fo == f)))
                                         for f in range(5)], omni, np.flatnonzero(good_o))
        for name, (fold_rows, test, evaluated) in sets.items():
            P = held_out(fold_rows, prep, test, len(test.ok), a.variants)
            got = scores(test.labels["coordination_number"][evaluated], {k: v[evaluated] for k, v in P.items()},
                         a.variants)
            for key, v in got.items():
                results.setdefault(name, {}).setdefault(key, []).append(v)
            print(f"{el}, {name}: " + " ".join(f"{k[0]}@{k[1]:g}={v:.2f}" for k, v in got.items()), flush=True)
    print("\n| hold-out | vote | " + " | ".join(f"share {s:g}" for s in SHARES) + " |")
    print("|---|---|" + "---|" * len(SHARES))
    for name, got in results.items():
        for variant in a.variants:
            print(f"| {name} (mean) | {variant} | " + " | ".join(f"{np.mean(got[(variant, s)]):.3f}" for s in SHARES)
                  + " |")


if __name__ == "__main__":
    main()
