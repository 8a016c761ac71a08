"""Structure types by cation-anion framework: which prototype families and host structures share one.

Leaving a prototype family out of training tests whether a model recognises a structure it never
saw only if nothing of the same structure type stays in training. Several families are one type
(the spinel families put M on the octahedral or the tetrahedral site of one framework, LiCoO2 is an
ordered rocksalt, ilmenite an ordered corundum, the two perovskites differ in the A cation), and
many Materials Project hosts are ordered or doped versions of a family (MgO-type Mg14CuVO16, 40
perovskites, ~100 spinels among the hosts the library holds).

The *framework* of a structure is the structure with every cation made one species and the anions
kept (an anion as in :mod:`.hosts`: Pauling electronegativity above 2.5), reduced to its primitive
cell. Two structures are of one type when pymatgen's ``StructureMatcher`` fits their frameworks
(lattices scaled to one volume, supercells tried; pymatgen's default tolerances).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

#: The species every cation becomes in a framework (a dummy: no element's chemistry enters).
CATION = "X0+"
#: Where the benchmarks keep each host's structure type between runs (relative to the checkout).
DEFAULT_CACHE = ".cache/frameworks.json"


def framework(structure: Any) -> Any:
    """``structure`` with every cation replaced by one dummy species, anions kept, primitive cell."""
    from pymatgen.core import DummySpecies

    from .hosts import ANION_ELECTRONEGATIVITY

    s = structure.copy()
    cation = DummySpecies.from_str(CATION)
    s.replace_species({el: cation for el in s.composition.elements if el.X <= ANION_ELECTRONEGATIVITY})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return s.get_primitive_structure()


def _anion_fraction(frame: Any) -> float:
    comp = frame.composition
    return 1.0 - comp[CATION] / comp.num_atoms


def _matcher() -> Any:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(primitive_cell=False, scale=True, attempt_supercell=True)


def same_type(a: Any, b: Any, matcher: Any = None) -> bool:
    """Whether two frameworks (:func:`framework`) are one structure type."""
    if abs(_anion_fraction(a) - _anion_fraction(b)) > 1e-6:  # cheap test first: the stoichiometry
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool((matcher or _matcher()).fit(a, b))
        except Exception:  # noqa: BLE001 - pymatgen raises on pathological cells; not a match then
            return False


def group_by_type(frameworks: Mapping[str, Any]) -> dict[str, str]:
    """Each name's structure type, named by its members joined with "+" (sorted): names whose
    frameworks match (directly or through another member) share one."""
    matcher = _matcher()
    groups: list[list[str]] = []
    for name in sorted(frameworks):
        hits = [g for g in groups if any(same_type(frameworks[m], frameworks[name], matcher) for m in g)]
        merged = [name] + [m for g in hits for m in g]
        groups = [g for g in groups if g not in hits] + [sorted(merged)]
    return {m: "+".join(g) for g in groups for m in g}


@cache
def family_frameworks() -> dict[str, Any]:
    """The framework of each prototype family's ideal structure (any element its Shannon radii allow)."""
    from ..foundation.edges import ELEMENTS
    from .structures import FAMILIES, _prototype

    out = {}
    for fam in FAMILIES:
        for el in ELEMENTS:
            try:
                out[fam.name] = framework(_prototype(fam.name, el)[0])
                break
            except TypeError:  # no Shannon radius of el in this family's state: another element
                continue
    return out


@cache
def family_types() -> dict[str, str]:
    """Prototype family -> its structure type (the families of one framework share a name); one
    answer per process (the matching takes seconds), not to be modified."""
    return group_by_type(family_frameworks())


def hosts_of_family_types(parents: Iterable[str], root: str | Path | None = None,
                          cache_file: str | Path | None = None) -> dict[str, set[str]]:
    """Structure type (:func:`family_types`) -> the host parents (Materials Project ids, read as
    ``root/<id>/POSCAR``) whose framework is that type's. ~0.06 s per host; with ``cache_file``
    each host's answer is kept (a JSON of id -> type or null) and read back on the next call."""
    from .omnixas import default_root
    from .readers import read_poscar

    base = Path(root) if root is not None else default_root()
    parents = list(parents)
    frames = family_frameworks()
    types: dict[str, list[Any]] = {}
    for fam, t in family_types().items():  # a host is of a type if it matches any member's framework
        types.setdefault(t, []).append(frames[fam])
    known: dict[str, str | None] = {}
    cache_path = Path(cache_file) if cache_file is not None else None
    if cache_path is not None and cache_path.is_file():
        try:
            raw = json.loads(cache_path.read_text())
        except ValueError:
            raw = None
        if isinstance(raw, dict):  # entries that are not a known type (or none) are recomputed, not trusted
            known = {str(k): v for k, v in raw.items() if v is None or (isinstance(v, str) and v in types)}
    matcher = _matcher()
    changed = False
    for parent in parents:
        if parent in known:
            continue
        poscar = base / parent / "POSCAR"
        if not poscar.is_file():  # of no type, and not remembered: the structure may come later
            continue
        frame = framework(read_poscar(poscar))
        known[parent] = next((t for t in sorted(types) if any(same_type(f, frame, matcher) for f in types[t])),
                             None)
        changed = True
    if cache_path is not None and changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(known, indent=0, sort_keys=True))
    out: dict[str, set[str]] = {t: set() for t in types}
    for parent in parents:
        if known.get(parent) in out:
            out[known[parent]].add(parent)
    return out
