"""Is the wurtzite family's CN 4 read as 5 because of where its E0 falls? (session 45)

The models call the left-out ``wurtzite`` family (M2+ tetrahedra) five-coordinate; on the models'
E0-referenced grid its first peak sits at E0 + 5 eV, the host tetrahedra's at E0 + 7-8 eV. Two
checks, per element, on the bundled library's project spectra:

1. Positions referenced to FEFF's Fermi level (a computed spectrum's first point): the half-step
   E0, the first peak above E0 - 2 eV, and where mu first reaches 10 % of the step, medians for the
   family and for the host sites of M2+ with CN 4, 5, 6.
2. A forest trained without the wurtzite structure type (pointwise grid, 300 trees, balanced
   classes; the models add the vote and the edge view) calls the family's spectra with their own
   E0 and with E0 moved 1, 2, 3 eV earlier (the grid re-referenced, nothing else changed).

    python scripts/wurtzite_e0.py [--elements Mn Fe Co Ni]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.signal import find_peaks
from sklearn.ensemble import RandomForestClassifier

from xanes_agent.data.frameworks import DEFAULT_CACHE
from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, type_groups, with_structure_types
from xanes_agent.foundation.normalization import find_e0, normalize
from xanes_agent.models.features import DEFAULT_GRID, extend_below_fermi, spectra_to_grid, to_grid


def positions(energy: np.ndarray, mu: np.ndarray) -> tuple[float, float, float]:
    """(E0, first peak, first 10 %-of-step point), eV above the Fermi level (the first point)."""
    ef = float(energy[0])
    e, m = extend_below_fermi(energy, mu)
    e0 = find_e0(e, m)
    y = m / np.interp(e0 + 50, e, m)
    sel = (e > ef) & (e < e0 + 30)
    peaks = e[sel][find_peaks(y[sel], prominence=0.02)[0]]
    first = peaks[peaks > e0 - 2]
    return e0 - ef, (first[0] if len(first) else np.nan) - ef, e[np.argmax(y > 0.1)] - ef


def on_grid(energy: np.ndarray, mu: np.ndarray, earlier: float) -> np.ndarray:
    """One spectrum as :func:`spectra_to_grid` puts it, but referenced ``earlier`` eV below its E0."""
    e, m = extend_below_fermi(energy, mu)
    e0 = find_e0(e, m)
    return to_grid(e, normalize(e, m, "post_edge", e0=e0).mu, e0 - earlier, DEFAULT_GRID)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", nargs="+", default=["Mn", "Fe", "Co", "Ni"])
    a = ap.parse_args()
    lib = load_bundled_library()
    for el in a.elements:
        s = with_structure_types(lib.where(element=el, source=PROJECT_SOURCE), cache_file=DEFAULT_CACHE)
        family = np.array([json.loads(p).get("family", "") for p in s.provenance]).astype(str)
        cn, ox = s.labels["coordination_number"], s.labels["oxidation_state"]
        host = np.char.startswith(family, "mp")
        groups = {"wurtzite": family == "wurtzite"}
        groups.update({f"host CN{c} M2+": host & (cn == c) & (ox == 2) for c in (4, 5, 6)})
        for name, rows in groups.items():
            p = np.nanmedian([positions(np.asarray(s.energy[i], float), np.asarray(s.mu[i], float))
                              for i in np.flatnonzero(rows)], axis=0)
            print(f"{el} {name:13s} n={rows.sum():4d}  above the Fermi level (eV): E0 {p[0]:5.1f}, "
                  f"first peak {p[1]:5.1f} (E0 + {p[1] - p[0]:4.1f}), 10 % of the step {p[2]:4.1f}")
        X = spectra_to_grid(s.energy, s.mu)[0]  # the models' grid
        ok = np.isfinite(X).all(axis=1) & np.isin(cn, [4, 5, 6])
        types = type_groups(s)
        train = ok & ~np.isin(types, np.unique(types[family == "wurtzite"]))
        forest = RandomForestClassifier(300, class_weight="balanced", random_state=0).fit(X[train], cn[train])
        wz = np.flatnonzero(ok & (family == "wurtzite"))
        for d in (0, 1, 2, 3):
            called = forest.predict(X[wz] if d == 0 else np.array(
                [on_grid(np.asarray(s.energy[i], float), np.asarray(s.mu[i], float), d) for i in wz]))
            print(f"{el} wurtzite, E0 {d} eV earlier: called 4 / 5 / 6:",
                  " / ".join(str(int((called == c).sum())) for c in (4, 5, 6)))


if __name__ == "__main__":
    main()
