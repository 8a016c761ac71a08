"""Oxide structure families for the project's FEFF10 library.

Coordinates are in pymatgen's default settings (origin choice 1 for Fd-3m and I4_1/amd). Each
family is a real crystal prototype built with pymatgen from its space group, published lattice
parameters and Wyckoff positions; the absorber ``M`` replaces the prototype cation on one site. The
lattice is scaled by the ratio of Shannon (1976) bond lengths r(M, ox, CN) + r(O2-) over those of the
prototype cation, so each substituted structure has plausible M-O distances; then a random lattice
strain and random site displacements (seeded) spread the bond lengths. A (family, element) pair is
generated only where Shannon's table lists the absorber in that oxidation state (a plausibility rule:
no Ni6+ scheelite), and a four-coordinate site only where it lists that state four-coordinate (no
tetrahedral Ti2+). The labels are then computed from the generated structure itself (CrystalNN), not
assumed from the family.

Every structure records its family, lattice parameters, strain, displacement size and seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

O_RADIUS = 1.40  # Shannon ionic radius of O2- (CN VI), Angstrom


@dataclass(frozen=True)
class Family:
    """A structure prototype. ``species`` uses ``"M"`` for the absorber site."""

    name: str
    description: str
    spacegroup: str
    lattice: tuple[float, ...]  # (a, b, c, alpha, beta, gamma), Angstrom and degrees
    species: tuple[str, ...]
    coords: tuple[tuple[float, float, float], ...]
    oxidation_state: int  # formal oxidation state of M by charge balance
    cn: str  # Shannon coordination label of the M site ("IV", "IVSQ", "V", "VI")
    prototype: tuple[str, int, str]  # (cation, oxidation state, Shannon CN) of the real compound
    reference: str = ""


def _hex(a: float, c: float) -> tuple[float, ...]:
    return (a, a, c, 90.0, 90.0, 120.0)


def _tet(a: float, c: float) -> tuple[float, ...]:
    return (a, a, c, 90.0, 90.0, 90.0)


FAMILIES: tuple[Family, ...] = (
    Family("rocksalt", "rocksalt MO (NiO)", "Fm-3m", _tet(4.177, 4.177), ("M", "O"),
           ((0, 0, 0), (0.5, 0.5, 0.5)), 2, "VI", ("Ni", 2, "VI"), "NiO, a=4.177 A"),
    Family("rutile", "rutile MO2 (TiO2)", "P4_2/mnm", _tet(4.594, 2.959), ("M", "O"),
           ((0, 0, 0), (0.3049, 0.3049, 0)), 4, "VI", ("Ti", 4, "VI"), "rutile TiO2, Burdett et al. 1987"),
    Family("anatase", "anatase MO2 (TiO2)", "I4_1/amd", _tet(3.785, 9.514), ("M", "O"),
           ((0, 0.5, 0.25), (0, 0.5, 0.4583)), 4, "VI", ("Ti", 4, "VI"), "anatase TiO2, Horn et al. 1972"),
    Family("corundum", "corundum M2O3 (Al2O3)", "R-3c", _hex(4.759, 12.991), ("M", "O"),
           ((0, 0, 0.35216), (0.30624, 0, 0.25)), 3, "VI", ("Al", 3, "VI"), "corundum, Lewis et al. 1982"),
    Family("spinel_oct", "spinel AM2O4, M octahedral (MgAl2O4)", "Fd-3m", _tet(8.083, 8.083),
           ("Mg", "M", "O"), ((0, 0, 0), (0.625, 0.625, 0.625), (0.3874, 0.3874, 0.3874)), 3, "VI",
           ("Al", 3, "VI"), "MgAl2O4, u=0.3874"),
    Family("spinel_tet", "spinel MAl2O4, M tetrahedral (MgAl2O4)", "Fd-3m", _tet(8.083, 8.083),
           ("M", "Al", "O"), ((0, 0, 0), (0.625, 0.625, 0.625), (0.3874, 0.3874, 0.3874)), 2, "IV",
           ("Mg", 2, "IV"), "MgAl2O4, u=0.3874"),
    Family("perovskite", "cubic perovskite SrMO3 (SrTiO3)", "Pm-3m", _tet(3.905, 3.905), ("Sr", "M", "O"),
           ((0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)), 4, "VI", ("Ti", 4, "VI"), "SrTiO3, a=3.905 A"),
    Family("perovskite_la", "cubic perovskite LaMO3 (LaAlO3 pseudo-cubic)", "Pm-3m", _tet(3.79, 3.79),
           ("La", "M", "O"), ((0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)), 3, "VI", ("Al", 3, "VI"),
           "LaAlO3 pseudo-cubic a=3.79 A"),
    Family("wurtzite", "wurtzite MO (ZnO)", "P6_3mc", _hex(3.250, 5.207), ("M", "O"),
           ((1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.3819)), 2, "IV", ("Zn", 2, "IV"), "ZnO, Kisi & Elcombe 1989"),
    Family("layered_limo2", "layered LiMO2 (LiCoO2)", "R-3m", _hex(2.816, 14.05), ("Li", "M", "O"),
           ((0, 0, 0.5), (0, 0, 0), (0, 0, 0.2396)), 3, "VI", ("Co", 3, "VI"), "LiCoO2, Orman & Wiseman 1984"),
    Family("ilmenite", "ilmenite MTiO3 (FeTiO3)", "R-3", _hex(5.088, 14.09), ("M", "Ti", "O"),
           ((0, 0, 0.3554), (0, 0, 0.1464), (0.3177, 0.0200, 0.2463)), 2, "VI", ("Fe", 2, "VI"),
           "FeTiO3, Wechsler & Prewitt 1984"),
    Family("pyramidal_112", "O-vacancy-ordered double perovskite CaBaM2O5, square-pyramidal M (YBaCo2O5-type)",
           "P4/mmm", _tet(3.88, 7.48), ("Ba", "Ca", "M", "O", "O"),
           ((0.5, 0.5, 0), (0.5, 0.5, 0.5), (0, 0, 0.2544), (0, 0, 0), (0, 0.5, 0.31)), 3, "V",
           ("Co", 3, "VI"), "YBaCo2O5, Vogt et al. 2000"),
    Family("zircon_m5", "zircon-type YMO4, isolated MO4 tetrahedra (YVO4)", "I4_1/amd", _tet(7.119, 6.289),
           ("Y", "M", "O"), ((0, 0.5, 0.25), (0, 0, 0.5), (0, 0.183, 0.3259)), 5, "IV",
           ("V", 5, "IV"), "YVO4, Chakoumakos et al. 1994"),
    Family("zircon_m4", "zircon-type ZrMO4, isolated MO4 tetrahedra (ZrSiO4)", "I4_1/amd", _tet(6.607, 5.982),
           ("Zr", "M", "O"), ((0, 0.5, 0.25), (0, 0, 0.5), (0, -0.1839, 0.3203)), 4, "IV",
           ("Si", 4, "IV"), "ZrSiO4, Hazen & Finger 1979"),
    Family("tenorite", "tenorite MO, square-planar M (CuO)", "C2/c", (4.684, 3.423, 5.129, 90.0, 99.54, 90.0),
           ("M", "O"), ((0.25, 0.25, 0), (0, 0.4184, 0.25)), 2, "IVSQ", ("Cu", 2, "IVSQ"),
           "CuO, Asbrink & Norrby 1970"),
)

FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


def _shannon_table(element: str, oxidation_state: int) -> dict[str, Any]:
    """Shannon's radii of ``element`` in that oxidation state, by coordination ({} if not listed)."""
    from pymatgen.core import Species

    try:
        sp = Species(element, oxidation_state)
        return sp.element.data.get("Shannon radii", {}).get(str(oxidation_state)) or {}
    except Exception:  # noqa: BLE001 - pymatgen raises for unknown states
        return {}


def shannon_radius(element: str, oxidation_state: int, cn: str) -> float | None:
    """Shannon ionic radius (Angstrom) or None if the (element, state) is not tabulated at all.

    When the exact coordination is missing, the nearest tabulated one is used (V falls back to the
    mean of IV and VI); high spin is preferred where spin states differ.
    """
    table = _shannon_table(element, oxidation_state)
    if not table:
        return None

    def radius(cn_key: str) -> float | None:
        spins = table.get(cn_key)
        if not spins:
            return None
        entry = spins.get("High Spin") or spins.get("") or next(iter(spins.values()))
        return float(entry["ionic_radius"])

    r = radius(cn)
    if r is not None:
        return r
    order = {"IV": ["IVSQ", "V", "VI"], "IVSQ": ["IV", "V", "VI"], "V": [], "VI": ["V", "VII", "IV"]}
    if cn == "V":
        r4, r6 = radius("IV") or radius("IVSQ"), radius("VI")
        if r4 is not None and r6 is not None:
            return 0.5 * (r4 + r6)
        return r6 or r4
    for alt in order.get(cn, []):
        r = radius(alt)
        if r is not None:
            return r
    return None


def plausible(family: Family, element: str) -> bool:
    """True where Shannon tabulates ``element`` in the family's oxidation state."""
    return shannon_radius(element, family.oxidation_state, family.cn) is not None


def four_coordination_tabulated(family: Family, element: str) -> bool:
    """False for a four-coordinate site (``IV``/``IVSQ``) whose oxidation state Shannon lists only
    with more neighbours, e.g. Ti2+, V2+ and Cr2+ (octahedral only): their tetrahedra and squares
    were sized with the octahedral radius and are not oxides anyone has made. True otherwise.
    """
    if family.cn not in ("IV", "IVSQ"):
        return True
    table = _shannon_table(element, family.oxidation_state)
    return "IV" in table or "IVSQ" in table


@dataclass
class GeneratedStructure:
    structure: Any
    absorber_index: int
    element: str
    family: str
    seed: int
    oxidation_state: int
    params: dict[str, Any] = field(default_factory=dict)  # what fixes the structure (compared on resume)
    details: dict[str, Any] = field(default_factory=dict)  # derived facts recorded beside them

    @property
    def id(self) -> str:
        return f"{self.family}-{self.element}-{self.seed}"


@cache
def _prototype(family_name: str, element: str) -> tuple[Any, float]:
    """The ideal (undistorted, scaled) structure; cached because space-group expansion is slow."""
    from pymatgen.core import Lattice, Structure

    family = FAMILY_BY_NAME[family_name]
    r_m = shannon_radius(element, family.oxidation_state, family.cn)
    proto_el, proto_ox, proto_cn = family.prototype
    r_p = shannon_radius(proto_el, proto_ox, proto_cn)
    scale = (r_m + O_RADIUS) / (r_p + O_RADIUS)
    a, b, c, al, be, ga = family.lattice
    lattice = Lattice.from_parameters(a * scale, b * scale, c * scale, al, be, ga)
    species = [element if sp == "M" else sp for sp in family.species]
    return Structure.from_spacegroup(family.spacegroup, lattice, species, [list(x) for x in family.coords]), scale


def build(family: Family, element: str, seed: int, strain_sigma: float = 0.015,
          displacement_sigma: float = 0.04) -> GeneratedStructure:
    """Build one distorted structure of ``family`` with ``element`` on the M site.

    ``strain_sigma`` is the standard deviation of each symmetric strain component (clipped at 3
    sigma); ``displacement_sigma`` (Angstrom) that of each Cartesian site displacement (clipped at
    2.5 sigma, and seed 0 of each pair is undistorted).
    """
    r_m = shannon_radius(element, family.oxidation_state, family.cn)
    if r_m is None:
        raise ValueError(f"{element}{family.oxidation_state:+d} is not tabulated for family {family.name}")
    from pymatgen.core import Lattice

    base, scale = _prototype(family.name, element)
    s = base.copy()
    rng = np.random.default_rng(seed)
    strain = np.zeros((3, 3))
    disp = displacement_sigma
    if seed % 50 != 0:  # every 50th seed keeps the ideal prototype geometry
        e = np.clip(rng.normal(0.0, strain_sigma, 6), -3 * strain_sigma, 3 * strain_sigma)
        strain = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
        # homogeneous deformation: lattice rows (vectors) map by (1 + strain), fractional coords kept
        s.lattice = Lattice(s.lattice.matrix @ (np.eye(3) + strain).T)
        shifts = np.clip(rng.normal(0.0, disp, (len(s), 3)), -2.5 * disp, 2.5 * disp)
        for i, v in enumerate(shifts):
            s.translate_sites([i], v, frac_coords=False, to_unit_cell=True)
    else:
        disp = 0.0
    absorber = next(i for i, site in enumerate(s) if site.specie.symbol == element)
    lat = s.lattice
    return GeneratedStructure(
        structure=s, absorber_index=absorber, element=element, family=family.name, seed=seed,
        oxidation_state=family.oxidation_state,
        params={"a": lat.a, "b": lat.b, "c": lat.c, "alpha": lat.alpha, "beta": lat.beta, "gamma": lat.gamma,
                "scale": scale, "strain": strain.round(5).tolist(), "displacement_sigma": disp,
                "shannon_radius": r_m, "spacegroup": family.spacegroup},
    )


def min_distance(structure: Any) -> float:
    """Shortest interatomic distance in the structure (Angstrom), periodic images included."""
    d = structure.distance_matrix
    np.fill_diagonal(d, np.inf)
    return float(d.min()) if d.size else float("inf")


def generate(elements: list[str], per_element: int, start_seed: int = 0) -> Iterator[GeneratedStructure]:
    """Round-robin over the plausible families of each element, ``per_element`` structures each.

    Seeds are consecutive integers from ``start_seed``, so a larger ``per_element`` reproduces the
    smaller build exactly and only adds structures (the library grows, the cache is reused).

    Skipped, without using up a place: structures with an interatomic distance below 1.5 Angstrom
    (overlapping atoms), and four-coordinate sites of an oxidation state Shannon lists only as
    octahedral (:func:`four_coordination_tabulated`). They are skipped seed by seed rather than
    dropped from the rotation so that every other seed keeps its family (and its cached spectrum).
    """
    for element in elements:
        fams = [f for f in FAMILIES if plausible(f, element)]
        # CN 5 has a single prototype: list it three times so the classes are less unbalanced
        fams += [f for f in fams if f.cn == "V"] * 2
        if not any(four_coordination_tabulated(f, element) for f in fams):
            continue  # nothing can be made for this element (and the loop below would never end)
        made = 0
        for seed in itertools.count(start_seed):
            if made == per_element:
                break
            fam = fams[seed % len(fams)]
            if not four_coordination_tabulated(fam, element):
                continue
            g = build(fam, element, seed)
            if min_distance(g.structure) < 1.5:
                continue
            made += 1
            yield g
