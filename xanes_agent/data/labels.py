"""Labels of the absorbing site computed from a crystal structure.

Method (documented, standard):

* **Coordination number** and **neighbours**: pymatgen's ``CrystalNN`` (Pan et al., Inorg. Chem. 60,
  1590, 2021), the local-environment method the Materials Project uses, with its default weights;
  when the structure carries no oxidation states, CrystalNN falls back on covalent radii.
* **Mean nearest-neighbour distance** (Angstrom): the mean absorber-neighbour distance over the
  CrystalNN neighbours.
* **Oxidation state** (formal, e): given by construction (the structure families know it) or
  else from pymatgen's bond-valence analyser (``BVAnalyzer``); NaN where that fails.

None of these is a Bader charge, and none is stored as one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def site_environment(structure: Any, index: int) -> dict[str, float]:
    """Coordination number and mean neighbour distance (Angstrom) of site ``index`` (CrystalNN)."""
    from pymatgen.analysis.local_env import CrystalNN

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no oxidation states" / radius fall-back chatter
        nn = CrystalNN().get_nn_info(structure, index)
    if not nn:
        return {"coordination_number": 0.0, "mean_nn_distance": float("nan")}
    centre = structure[index].coords
    dists = [float(np.linalg.norm(info["site"].coords - centre)) for info in nn]
    return {"coordination_number": float(len(nn)), "mean_nn_distance": float(np.mean(dists))}


def bond_valence_oxidation_state(structure: Any, index: int) -> float:
    """Formal oxidation state of site ``index`` from bond valence sums; NaN if unassignable."""
    from pymatgen.analysis.bond_valence import BVAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            valences = BVAnalyzer().get_valences(structure)
        return float(valences[index])
    except Exception:  # noqa: BLE001 - BVAnalyzer raises ValueError for unassignable structures
        return float("nan")


def site_labels(structure: Any, index: int, oxidation_state: float | None = None) -> dict[str, float]:
    """All structural labels of site ``index``; ``oxidation_state`` overrides the bond-valence guess."""
    labels = site_environment(structure, index)
    labels["oxidation_state"] = (
        float(oxidation_state) if oxidation_state is not None else bond_valence_oxidation_state(structure, index)
    )
    return labels
