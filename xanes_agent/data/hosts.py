"""Absorber sites in real host structures: the Materials Project oxides of the OmniXAS set.

The 15 prototype families (:mod:`.structures`) give every label class, but each (coordination,
oxidation state) pair comes from one or two families, so a forest can learn the family instead of
the environment. These hosts are 2,697 relaxed Materials Project oxides (``../shared/data/omnixas_cu``,
one ``POSCAR`` each), and every absorber site computed in them records its parent structure.

Four kinds of site, all planned here without running anything expensive:

* **native**: a symmetry-distinct site of the absorbing element itself (Ti..Cu) in its own
  structure, unchanged.
* **substituted**: the absorber put on a symmetry-distinct cation site of another element
  (isovalent, so the cell stays charge balanced) where Shannon (1976) lists the absorber in that
  oxidation state and coordination, and where the first shell then needs at most a 15 % change in
  length. The cell is first repeated until every lattice vector is >= 7 Angstrom (the absorber is
  then a dilute dopant: its nearest image lies outside FEFF's 4.5 Angstrom FMS sphere), and the
  first-shell O atoms are moved along their bonds so the mean bond length becomes the Shannon
  sum r(M, ox, CN) + r(O2-) while the shell's distortion (bond-length spread, angles) is kept.
* **aliovalent**: where an element has fewer than :data:`MIN_ISOVALENT` isovalent candidates of
  one coordination in all the hosts (five-coordinate Ti, V and Cr: 50, 78 and 126 in the 2,697
  hosts, against 460-690 for Mn..Cu), the absorber also goes, as above, on sites where only a
  charge one above or below the host's fits (the one whose Shannon bond length needs the smaller
  change): a dopant whose charge a real crystal compensates elsewhere (V5+ or Ti3+ on a pyramidal
  site of a 4+ host). The oxidation-state label is the absorber's state, ``charge_change`` the
  difference. Without them those classes could never reach 150 spectra from real structures.
* **estimated radius**: Shannon lists Ti3+, V3+ and Cr3+ (and Co3+, Ni3+, Cu3+) six-coordinate
  only, so no rule above puts a trivalent ion on a five-coordinate site, and five-coordinate M3+
  came from one prototype family. Where no tabulated radius fits a five-coordinate site, the
  trivalent absorber's radius is estimated as r(VI) x the mean r(V)/r(VI) of the 3d ions Shannon
  lists both ways (0.89, :func:`estimated_radius`), and the site is planned as above (isovalent, or
  aliovalent where those are scarce: Ti3+, V3+, Cr3+ on divalent hosts' square pyramids, from
  ~200-250 parents each); its params say ``radius: estimated``. These candidates come after all
  others of their class, so the plan's earlier sites keep their order (and their cache keys).
* **second state**: a five-coordinate site whose candidate above is another state (Co2+, Ni2+,
  Cu2+ on the hosts' Cu2+ pyramids, Ti4+ on a 3+ host) also gets the trivalent absorber from its
  estimated radius where that fits (``second_state``), last in its class: for Co, Ni and Cu every
  five-coordinate M3+ spectrum was the ``pyramidal_112`` family's (session 25); 48-87 candidates
  per element for Ti, V, Cr and Cu, 455-498 for Co and Ni. They lie beyond the first 1,000 sites
  of each element's plan (from position ~1,340), hence the build's 2,500. Session 28: Mn3+ and
  Fe3+, whose five-coordinate radii Shannon lists, the same way from those (after the estimated
  ones): the library's five-coordinate Mn and Fe were 119 and 151 M2+ host spectra against 13 M3+
  ones, and the left-out ``pyramidal_112`` family (M3+) was called six-coordinate for both.

Planning uses a cheap first shell: the O neighbours within 1.2 x the shortest cation-anion
distance, all of them O (oxides only), 4 to 6 of them. The host oxidation state is the site's
bond-valence sum (Brese & O'Keeffe 1991 parameters, via pymatgen), rounded. The labels of every
computed spectrum are then taken from the final structure itself (CrystalNN, as for all library
spectra); a site whose CrystalNN coordination is outside 4-6 is skipped before FEFF runs.

The order of the plan spreads the environments: per element, candidates are grouped by the planned
coordination (4, 5, 6) and taken round-robin over the classes; within a class, round-robin over
parent structures (each parent once before any parent twice, at most :data:`MAX_PER_PARENT` sites
per parent and element) in an order fixed by a hash, so a larger target only extends a smaller one
(the build stays resumable and its cache reusable). A build *runs* the plan's pending sites of
classes still short of :data:`CLASS_TARGET` spectra or of :data:`PARENT_TARGET` parent structures
(a site of a parent new to its class), of oxidation states within a class short of
:data:`STATE_TARGET` spectra or :data:`STATE_PARENT_TARGET` parents, of Jahn-Teller-elongated
octahedra short of :data:`ELONGATED_TARGET`, or of elements short of :data:`ELEMENT_TARGET` spectra
first (:func:`deficit_first`); what the plan holds does not change.

Tetrahedra get their own count because the coordination class cannot tell them from square planes:
four-coordinate M2+ of Mn, Fe, Co, Ni and Cu is mostly the hosts' square-planar Cu2+ sites (Mn2+
13 tetrahedral of 92, Co2+ 20 of 144, Ni2+ 28 of 196, Cu2+ 29 of 203 at session 38's end), and
with the ``wurtzite`` family (M2+ tetrahedra) left out the models called it five-coordinate for
15-34 of its 17-34 spectra (``benchmarks/transfer.py``, hosts in training). A four-coordinate site
whose planning shell's largest O-M-O angle is below :data:`TETRAHEDRAL_MAX_ANGLE` (109.5 degrees
in a regular tetrahedron, 180 across a square plane) runs first while its (element, oxidation
state) has fewer than :data:`TETRAHEDRAL_TARGET` tetrahedral spectra.

Tetrahedra in a network of corner-sharing tetrahedra get a count of their own within that one: the
hosts' M2+ tetrahedra were mostly isolated ones among octahedra, and with the family left out the
models still called wurtzite five-coordinate (Mn 17 of 17, Co 15 of 19, Ni 18 of 20; session 42).
A dopant in ZnO keeps the family's spectrum (session 43), and the hosts' M2+ tetrahedra with at least
:data:`NETWORK_MIN` tetrahedral cations within :data:`NETWORK_RADIUS` (the wurtzite-derived LiCuPO4,
Li2CuSiO4, Li3Cu(PO4)2: 46 candidates per element from 26 parents) have its low white line and late
second peak where the others do not (figures at :data:`NETWORK_MIN`). Such a site
(:attr:`HostSite.tetrahedral_network`) runs first while its (element, state) has fewer than
:data:`NETWORK_TARGET`; most lie beyond the first 2,500 sites of an element's plan (at positions
up to ~6,500 of 4,400-6,600), hence builds that take up to 7,000 sites per element. They did not
cure the miss: with 112 such M2+ spectra computed the family is still called five-coordinate
(Mn 17, Co 13, Ni 17; docs/models.md, session 44): they share its low white line, but what sets
the family apart is where its E0 falls (a long foot puts its half-step point 2.5-3 eV late relative
to the same onset and first peak; session 45, scripts/wurtzite_e0.py). They stay as environments
the library lacked.

Square pyramids with a perovskite-like second shell get their own count too: the ``pyramidal_112``
family (M3+ pyramids in a layered perovskite, Ba and Y around them) has a sharp, tall white line,
and the hosts' five-coordinate sites were mostly in frameworks of small cations (five-coordinate Mn
1.37 mean white-line height without a large cation within 3.8 Angstrom, 1.59 with four or more, the
family 1.75; Fe 1.29 / 1.56 / 1.84), so a left-out family was called six-coordinate (Mn 38 of 54, Fe
38 of 60, Ti 55 of 69; session 41). A five-coordinate site with at least :data:`A_SITE_MIN` of
:data:`A_SITE_CATIONS` within :data:`A_SITE_RADIUS` of it ran first while its (element, oxidation
state) had fewer than 30 such spectra. That count alone confounded the second shell with the class:
with 41-95 perovskite-like pyramids per (element, state) against 1-23 octahedra of the same kind (a
perovskite's B site), the models called the LaMO3 perovskites five-coordinate (Ti 15, V 20 of 24,
left out with their type; session 42). So the count is kept per (element, coordination, state) for
five- and six-coordinate sites alike (:attr:`HostSite.a_site_shell`): a perovskite-like second shell
is no sign of either class.

Elongated octahedra get their own count because the planning shell cannot see them: a Cu2+ site
with four O at 1.95 Angstrom and two at 2.4 counts four neighbours (the long pair lies beyond
1.2 x the shortest), so it sits in the full four-coordinate class, while CrystalNN, on the computed
structure, calls half such sites six-coordinate (664 of the 1,323 OmniXAS Cu sites elongated 1.15
to 1.40; 287 five, 316 four). OmniXAS holds 531 six-coordinate Cu sites elongated beyond 1.20 among
its 1,345 (FEFF 9), the project 23 of 161 at session 17's end, and a FEFF10 Cu model called 58 %
of them four-coordinate across codes (``scripts/cu_elongation.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .structures import O_RADIUS, GeneratedStructure, _shannon_table, shannon_radius

#: Pauling electronegativity above which an element counts as an anion, not a cation site (O 3.44,
#: Cl 3.16, N 3.04; C, S, Se and Au, at 2.54-2.58, count as anions too, so no absorber replaces them).
ANION_ELECTRONEGATIVITY = 2.5
#: Most sites one parent structure gives one element (spreads the library over parents).
MAX_PER_PARENT = 4
#: First-shell length change allowed for a substitution (target / host mean bond length).
SCALE_RANGE = (0.85, 1.15)
#: Shortest lattice vector (Angstrom) of the cell a substituted absorber sits in.
MIN_CELL_LENGTH = 7.0
#: Relative tolerance of the planning first shell (neighbours within (1 + tol) x the shortest).
SHELL_TOLERANCE = 0.2
#: Isovalent candidates of one coordination (all hosts) below which an element takes aliovalent sites.
MIN_ISOVALENT = 150
#: Spectra per (element, coordination class) the build fills first (issue 13's target per class).
CLASS_TARGET = 150
#: Distinct parent structures per (element, coordination class) the build fills first: a class
#: learns from structures, not from copies. On the session-21 library a held-out parent's
#: five-coordinate site was recognised 35-40 % of the time for V and Cr, whose classes held 150
#: spectra from 69 and 75 parents (the square-pyramidal family's strained copies of one parent
#: among them), and 52-65 % for Fe, Co, Ni, Cu, whose held 202-239 from 140-170
#: (``benchmarks/transfer.py``, parents left out).
PARENT_TARGET = 150
#: Spectra per (element, coordination, oxidation state) the build fills first where the plan holds
#: such sites: a class is to spread over the states the element takes in it (Cr6+ and Cr4+
#: tetrahedra, not only Cr5+), and a fifth of the class target is the least a state gets.
STATE_TARGET = 30
#: Distinct parent structures per (element, coordination, oxidation state) the build fills first,
#: the same way: counted in spectra, a prototype family's 57-75 strained copies filled the state
#: target alone, so five-coordinate Co3+, Ni3+ and Cu3+ came from that one family, Fe3+ from 6
#: parents, and four-coordinate Fe3+ (the common tetrahedral ferric site) from 12 (session 25).
STATE_PARENT_TARGET = 30
#: Jahn-Teller ions: an elongated octahedron is their ground-state environment in oxides (high-spin
#: d4, d9), not an artefact of the host site they sit on.
JAHN_TELLER_IONS = frozenset({("Cu", 2), ("Mn", 3), ("Cr", 2)})
#: Elongation (:func:`elongation`) of the octahedra counted as Jahn-Teller-elongated: above a
#: near-regular one's (OmniXAS six-coordinate Cu: 563 below 1.10), up to the longest CrystalNN still
#: calls six-coordinate (of the 782 six-coordinate OmniXAS Cu sites beyond 1.10, 781 lie below 1.40).
ELONGATED_BAND = (1.15, 1.40)
#: Spectra of a Jahn-Teller ion in an elongated octahedron per element the build fills first.
ELONGATED_TARGET = 150
#: Largest O-M-O angle (degrees) of a four-coordinate planning shell counted as a tetrahedron:
#: 109.5 in a regular one; a square plane has two trans pairs at ~180, a see-saw one at ~150-170.
TETRAHEDRAL_MAX_ANGLE = 135.0
#: Tetrahedral spectra per (element, oxidation state) the build fills first: twice the state target,
#: since a state's four-coordinate class is split between two geometries whose spectra differ most.
TETRAHEDRAL_TARGET = 2 * STATE_TARGET
#: How far (Angstrom) from a tetrahedral site its corner-sharing tetrahedral cations are counted:
#: the cation-cation distance across a shared O is 3.2-3.3 in ZnO, up to ~3.6 in silicates and
#: germanates, while a spinel's A site has its four A neighbours beyond 3.5 and twelve octahedral B.
NETWORK_RADIUS = 3.7
#: Tetrahedral cations within :data:`NETWORK_RADIUS` that make a tetrahedral site part of a network
#: of corner-sharing tetrahedra (twelve in wurtzite ZnO): the hosts' M2+ tetrahedra with six or more
#: have wurtzite's low white line and late second peak (Co2+ 1.19 high with the second peak at E0 +
#: 16.1 eV, wurtzite 1.25 at 17.9; those with fewer 1.36-1.51 at 12.6; session 44).
NETWORK_MIN = 6
#: Tetrahedral-network spectra per (element, oxidation state) the build fills first: as many as
#: tetrahedra, of which they are a kind.
NETWORK_TARGET = TETRAHEDRAL_TARGET
#: Large cations of a perovskite's A site (and of the layered and oxygen-deficient perovskites
#: derived from it): alkali and alkaline-earth ions from Na and Ca down, Y and the lanthanides, and
#: the large post-transition ions (eight-coordinate Shannon radii ~0.98-1.74 Angstrom).
A_SITE_CATIONS = frozenset("Na K Rb Cs Ca Sr Ba Y La Ce Pr Nd Sm Eu Gd Tb Dy Ho Er Tm Yb Lu "
                           "Pb Bi Tl Hg Cd Ag".split())
#: How far (Angstrom) from a site its A-site cations are counted: a perovskite's B-A distance is
#: sqrt(3)/2 x the cell edge, 3.3-3.5 Angstrom.
A_SITE_RADIUS = 3.8
#: A-site cations within :data:`A_SITE_RADIUS` that make a five- or six-coordinate site
#: perovskite-like (eight in a cubic perovskite; four to eight in the layered ones).
A_SITE_MIN = 4
#: Coordination numbers whose sites the A-site count covers (square pyramids and octahedra).
A_SITE_CNS = (5, 6)
#: Perovskite-like square pyramids and octahedra per (element, coordination, oxidation state) the
#: build fills first.
A_SITE_TARGET = STATE_TARGET
#: Spectra per element the build fills first once its classes are filled (issue 13: >= 1,000 per
#: element). The plan interleaves elements, so without it every element grew alike and the largest
#: overshot while the smallest lagged (session 28's end: Mn 953, Ni 845): the smallest goes first.
ELEMENT_TARGET = 1000

_CN_LABEL = {4: "IV", 5: "V", 6: "VI"}


@dataclass(frozen=True)
class HostSite:
    """One planned absorber site in a real host structure (plain, picklable data).

    ``site`` is the 0-based index in the parent's POSCAR; distances are in Angstrom.
    """

    parent: str  # Materials Project id of the host
    poscar: str
    site: int
    host_species: str  # the element on that site in the parent
    element: str  # the absorber
    oxidation_state: int  # the absorber's: the host site's rounded bond-valence sum + charge_change
    cn_estimate: int
    host_distance: float  # mean first-shell distance in the parent
    target_distance: float  # mean first-shell distance after rescaling (== host_distance if native)
    n_equivalent: int  # symmetry-equivalent sites of it in the parent cell
    charge_change: int = 0  # absorber's state - host's: 0 native or isovalent, +-1 aliovalent
    # the first shell's target length from an estimated five-coordinate radius (:func:`estimated_radius`:
    # Shannon lists the state six-coordinate only)
    estimated_radius: bool = False
    # first-shell elongation of the computed structure (:func:`elongation`, after the shell's
    # rescaling); None with fewer than six O within 3.2 Angstrom. Not in ``params``: it follows
    # from them
    elongation: float | None = None
    # a five-coordinate site's trivalent candidate beside its first one (:func:`host_sites`); not in
    # ``params`` (the state and the estimated radius there already tell the structure)
    second_state: bool = False
    # the planning shell's largest O-M-O angle (degrees, :func:`largest_shell_angle`); not in ``params``:
    # it follows from the structure
    shell_angle: float | None = None
    # :data:`A_SITE_CATIONS` within :data:`A_SITE_RADIUS` of the site in the parent; not in ``params``:
    # it follows from the structure
    a_site_neighbours: int | None = None
    # a tetrahedral site's tetrahedral cations within :data:`NETWORK_RADIUS` in the parent
    # (:func:`tetrahedral_neighbours`); None for other sites. Not in ``params``: it follows from the structure
    tetrahedral_neighbours: int | None = None

    @property
    def native(self) -> bool:
        return self.host_species == self.element

    @property
    def family(self) -> str:
        return "mp-native" if self.native else "mp-aliovalent" if self.charge_change else "mp-substituted"

    @property
    def jahn_teller_elongated(self) -> bool:
        """A Jahn-Teller ion (:data:`JAHN_TELLER_IONS`) in an octahedron elongated within
        :data:`ELONGATED_BAND`."""
        return ((self.element, self.oxidation_state) in JAHN_TELLER_IONS and self.elongation is not None
                and ELONGATED_BAND[0] < self.elongation <= ELONGATED_BAND[1])

    @property
    def tetrahedral(self) -> bool:
        """A four-coordinate site whose planning shell is a tetrahedron, not a square plane
        (largest O-M-O angle below :data:`TETRAHEDRAL_MAX_ANGLE`)."""
        return tetrahedral_shell(self.cn_estimate, self.shell_angle)

    @property
    def tetrahedral_network(self) -> bool:
        """A tetrahedral site (:attr:`tetrahedral`) sharing corners with at least :data:`NETWORK_MIN`
        other tetrahedra, as in wurtzite ZnO, where a beamline sample's dopant sits."""
        return (self.tetrahedral and self.tetrahedral_neighbours is not None
                and self.tetrahedral_neighbours >= NETWORK_MIN)

    @property
    def a_site_shell(self) -> bool:
        """A five- or six-coordinate site with a perovskite-like second shell (at least
        :data:`A_SITE_MIN` of :data:`A_SITE_CATIONS` within :data:`A_SITE_RADIUS`): a layered
        perovskite's square pyramid, a perovskite's B-site octahedron."""
        return (self.cn_estimate in A_SITE_CNS and self.a_site_neighbours is not None
                and self.a_site_neighbours >= A_SITE_MIN)

    @property
    def id(self) -> str:
        kind = "native" if self.native else f"sub{self.charge_change:+d}" if self.charge_change else "sub"
        return f"{self.parent}_{self.site}-{self.element}-{kind}"

    @property
    def seed(self) -> int:
        return 0

    @property
    def absorber_index(self) -> int:
        return self.site

    @property
    def params(self) -> dict[str, Any]:
        """What fixes the structure computed for this site (compared when a build resumes)."""
        out = {"parent": self.parent, "site": self.site, "host_species": self.host_species,
               "oxidation_state": self.oxidation_state, "host_distance": round(self.host_distance, 5),
               "target_distance": round(self.target_distance, 5), "min_cell_length": MIN_CELL_LENGTH}
        if self.charge_change:  # only then: the params (cache keys) of every other site stay as they were
            out["charge_change"] = self.charge_change
        if self.estimated_radius:  # the same: only where it holds
            out["radius"] = f"estimated: {five_from_six():.3f} x Shannon r(VI)"
        return out

    def materialize(self) -> GeneratedStructure:
        """The structure FEFF runs on: the parent, or the substituted, rescaled dilute cell."""
        from .readers import read_poscar

        s = read_poscar(self.poscar)
        index = self.site
        extra: dict[str, Any] = {}
        if not self.native:
            s.add_site_property("xanes_absorber", [i == self.site for i in range(len(s))])
            reps = [max(1, int(np.ceil(MIN_CELL_LENGTH / x))) for x in s.lattice.abc]
            if reps != [1, 1, 1]:
                s.make_supercell(reps)
            index = next(i for i, v in enumerate(s.site_properties["xanes_absorber"]) if v)
            s.remove_site_property("xanes_absorber")
            s.replace(index, self.element)
            shell = first_shell(s, index)
            if shell is None:
                raise ValueError(f"{self.id}: the first shell changed on repetition")
            centre = s[index].coords
            scale = self.target_distance / self.host_distance
            for n in shell:
                # move each shell atom along its bond (its image's vector from the absorber)
                s.translate_sites([n.index], (scale - 1.0) * (n.coords - centre), frac_coords=False,
                                  to_unit_cell=True)
            extra = {"supercell": reps, "shell_scale": round(scale, 5)}
        return GeneratedStructure(structure=s, absorber_index=index, element=self.element,
                                  family=self.family, seed=0, oxidation_state=self.oxidation_state,
                                  params=self.params,
                                  details={**extra, "site_in_computed_structure": index,
                                           "parent_spacegroup": _spacegroup(self.poscar)})


def first_shell(structure: Any, index: int, cutoff: float = 3.3) -> list[Any] | None:
    """The planning first shell of site ``index``: neighbours within (1 + tol) x the shortest
    distance; None unless they are all O and 4 to 6 of them."""
    nbrs = structure.get_neighbors(structure[index], cutoff)
    if not nbrs:
        return None
    dmin = min(n.nn_distance for n in nbrs)
    shell = [n for n in nbrs if n.nn_distance <= (1.0 + SHELL_TOLERANCE) * dmin]
    if not 4 <= len(shell) <= 6 or any(n.specie.symbol != "O" for n in shell):
        return None
    return shell


def a_site_neighbours(structure: Any, index: int) -> int:
    """How many :data:`A_SITE_CATIONS` lie within :data:`A_SITE_RADIUS` of site ``index``."""
    return sum(n.specie.symbol in A_SITE_CATIONS for n in structure.get_neighbors(structure[index], A_SITE_RADIUS))


def tetrahedral_shell(n_ligands: int, largest_angle: float | None) -> bool:
    """Whether a planning shell of ``n_ligands`` O whose largest O-M-O angle is ``largest_angle``
    (degrees) is a tetrahedron: four O, the angle below :data:`TETRAHEDRAL_MAX_ANGLE`."""
    return n_ligands == 4 and largest_angle is not None and largest_angle < TETRAHEDRAL_MAX_ANGLE


def is_tetrahedron(structure: Any, index: int, shell: list[Any] | None) -> bool:
    """Whether a planning shell (:func:`first_shell`) of site ``index`` is a tetrahedron
    (:func:`tetrahedral_shell`); the angles are measured only for a shell of four."""
    return shell is not None and len(shell) == 4 and tetrahedral_shell(4, largest_shell_angle(structure, index, shell))


def tetrahedral_neighbours(structure: Any, index: int) -> int:
    """How many cations within :data:`NETWORK_RADIUS` of site ``index`` sit in tetrahedra
    (:func:`is_tetrahedron`)."""
    return sum(is_tetrahedron(structure, n.index, first_shell(structure, n.index))
               for n in structure.get_neighbors(structure[index], NETWORK_RADIUS)
               if n.specie.symbol != "O" and n.specie.X <= ANION_ELECTRONEGATIVITY)


def largest_shell_angle(structure: Any, index: int, shell: list[Any]) -> float:
    """The largest O-M-O angle (degrees) between the bonds from site ``index`` to its ``shell``
    (neighbours as pymatgen gives them, e.g. :func:`first_shell`'s): ~109.5 for a tetrahedron, ~180
    where two ligands face each other."""
    v = np.array([n.coords - structure[index].coords for n in shell], dtype=float)
    v /= np.linalg.norm(v, axis=1)[:, None]
    cos = np.clip(v @ v.T, -1.0, 1.0)[np.triu_indices(len(shell), 1)]
    return float(np.degrees(np.arccos(cos.min())))


def elongation(distances: Iterable[float]) -> float | None:
    """First-shell elongation of an absorber from its M-O distances (Angstrom): the mean of the two
    longest over the mean of the four shortest of the six shortest; 1 for a regular octahedron,
    ~1.2-1.4 for a Jahn-Teller-elongated Cu2+ one. None with fewer than six distances."""
    d = sorted(distances)[:6]
    return float(np.mean(d[4:]) / np.mean(d[:4])) if len(d) == 6 else None


def site_elongation(structure: Any, index: int, scale: float = 1.0) -> float | None:
    """:func:`elongation` of site ``index`` over the O within 3.2 Angstrom, the planning shell's
    bonds scaled by ``scale`` (as :meth:`HostSite.materialize` moves them)."""
    return _scaled_elongation(_o_distances(structure, index), scale)


def _o_distances(structure: Any, index: int) -> list[float]:
    return [n.nn_distance for n in structure.get_neighbors(structure[index], 3.2) if n.specie.symbol == "O"]


def _scaled_elongation(d: list[float], scale: float) -> float | None:
    if not d:
        return None
    # the planning shell (first_shell) is exactly the O within (1 + tol) x the shortest distance
    cut = (1.0 + SHELL_TOLERANCE) * min(d)
    return elongation([x * scale if x <= cut else x for x in d])


def _bv_oxidation_state(structure: Any, index: int) -> int | None:
    """Most probable oxidation state of site ``index`` from its bond-valence sum: pymatgen's
    BVAnalyzer per-site posterior (ICSD-calibrated sum distributions x ICSD occurrence priors,
    neighbours within 4 Angstrom), without its cell-wide charge-neutral search, which takes minutes
    on large cells. None where no parameters exist or the state would be below +1."""
    import math

    from pymatgen.analysis.bond_valence import ICSD_BV_DATA, PRIOR_PROB, calculate_bv_sum

    site = structure[index]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = calculate_bv_sum(site, structure.get_neighbors(site, 4.0))
    except (KeyError, ValueError):  # no bond-valence parameters for this pair
        return None
    post = {sp.oxi_state: math.exp(-((v - d["mean"]) ** 2) / 2 / d["std"] ** 2) / d["std"] * PRIOR_PROB[sp]
            for sp, d in ICSD_BV_DATA.items()
            if sp.symbol == site.specie.symbol and sp.oxi_state != 0 and d["std"] > 0}
    if not post or max(post.values()) <= 0:
        return None
    q = int(max(post, key=post.get))
    return q if q >= 1 else None


def _tabulated(element: str, q: int, cn: int) -> float | None:
    """Shannon radius of ``element`` in state ``q`` with ``cn`` O neighbours, or None where Shannon
    does not list that state with that coordination (four-coordinate: IV or IVSQ; five: V, or IV
    and VI to interpolate; six: VI)."""
    table = _shannon_table(element, q)
    if not table:
        return None
    if cn == 4 and not ("IV" in table or "IVSQ" in table):
        return None
    if cn == 5 and not ("V" in table or ("VI" in table and ("IV" in table or "IVSQ" in table))):
        return None
    if cn == 6 and "VI" not in table:
        return None
    return shannon_radius(element, q, _CN_LABEL[cn])


@lru_cache(maxsize=1)
def five_from_six() -> float:
    """Mean r(V) / r(VI) of the Shannon (1976) entries of Ti..Cu that list both (high spin where
    spin states differ): about 0.9."""
    ratios = []
    for el in ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"):
        for q in range(1, 7):
            table = _shannon_table(el, q)
            if "V" in table and "VI" in table:
                ratios.append(shannon_radius(el, q, "V") / shannon_radius(el, q, "VI"))
    return float(np.mean(ratios))


def estimated_radius(element: str, q: int, cn: int) -> float | None:
    """A five-coordinate radius (Angstrom) for a trivalent ion Shannon lists six-coordinate only
    (Ti3+, V3+, Cr3+, Co3+, Ni3+, Cu3+): :func:`five_from_six` x r(VI). None for any other state or
    coordination, and where Shannon lists it five-coordinate (or IV and VI to interpolate).

    Trivalent only: five-coordinate M3+ is what the prototype families alone supplied (one family,
    ``pyramidal_112``), so a model could tell the class by the family; divalent Ti, V and Cr are
    strong reductants, rare in oxides and unknown five-coordinate there, and would have made most
    of these candidates (on the hosts' many Cu2+ pyramids)."""
    if cn != 5 or q != 3 or _tabulated(element, q, 5) is not None:
        return None
    table = _shannon_table(element, q)
    return five_from_six() * shannon_radius(element, q, "VI") if "VI" in table else None


def trivalent_five_radius(element: str, q: int, cn: int) -> float | None:
    """The five-coordinate radius (Angstrom) of the trivalent ion: Shannon's where listed (Mn3+,
    Fe3+), else :func:`estimated_radius`; None for any other state or coordination."""
    if cn != 5 or q != 3:
        return None
    return _tabulated(element, q, cn) or estimated_radius(element, q, cn)


@lru_cache(maxsize=4096)
def _spacegroup(poscar: str) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .readers import read_poscar

    return SpacegroupAnalyzer(read_poscar(poscar), symprec=0.1).get_space_group_symbol()


def _fits(radius_of: Any, element: str, q: int, cn: int, d_host: float) -> dict[int, float]:
    """Charge change (0, -1, +1) -> target first-shell length (Angstrom) for each state of
    ``element`` whose radius (``radius_of(element, state, cn)``) puts the bond length within
    :data:`SCALE_RANGE` of the host's ``d_host``."""
    return {dq: r + O_RADIUS for dq in (0, -1, 1) if (r := radius_of(element, q + dq, cn)) is not None
            and SCALE_RANGE[0] <= (r + O_RADIUS) / d_host <= SCALE_RANGE[1]}


def host_sites(poscar: str | Path, parent: str, elements: Iterable[str]) -> list[HostSite]:
    """Every candidate absorber site of ``elements`` in one host structure: native, isovalent and,
    where no isovalent one fits, aliovalent (:func:`all_sites` keeps those only where needed)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .readers import read_poscar

    s = read_poscar(poscar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sym = SpacegroupAnalyzer(s, symprec=0.1).get_symmetrized_structure()
    out: list[HostSite] = []
    for eq in sym.equivalent_indices:
        i = eq[0]
        host = s[i].specie.symbol
        if host == "O" or s[i].specie.X > ANION_ELECTRONEGATIVITY:  # anions are not cation sites
            continue
        shell = first_shell(s, i)
        if shell is None:
            continue
        q = _bv_oxidation_state(s, i)
        if q is None:
            continue
        cn = len(shell)
        d_host = float(np.mean([n.nn_distance for n in shell]))
        d_o = _o_distances(s, i)  # once per site, for every element's elongation
        angle = largest_shell_angle(s, i, shell)  # rescaling moves the O along their bonds: the angles stay
        a_site = a_site_neighbours(s, i)  # the absorber replaces the site's cation; its neighbours stay
        network = tetrahedral_neighbours(s, i) if tetrahedral_shell(cn, angle) else None
        for el in elements:
            if el == host:
                out.append(HostSite(parent, str(poscar), i, host, el, q, cn, d_host, d_host, len(eq),
                                    elongation=_scaled_elongation(d_o, 1.0), shell_angle=angle,
                                    a_site_neighbours=a_site, tetrahedral_neighbours=network))
                continue
            fits = _fits(_tabulated, el, q, cn, d_host)
            estimated = not fits  # no tabulated radius fits: a five-coordinate M3+ from its estimated one
            if estimated:
                fits = _fits(estimated_radius, el, q, cn, d_host)
            if fits:
                # isovalent where it fits; else the charge whose bond length needs the smaller change
                dq = 0 if 0 in fits else min(fits, key=lambda k: (abs(np.log(fits[k] / d_host)), k))
                out.append(HostSite(parent, str(poscar), i, host, el, q + dq, cn, d_host, fits[dq], len(eq), dq,
                                    estimated, _scaled_elongation(d_o, fits[dq] / d_host), shell_angle=angle,
                                    a_site_neighbours=a_site, tetrahedral_neighbours=network))
            if not estimated:
                # the trivalent absorber too (Co3+ on a Co2+-sized pyramid from its estimated radius,
                # Mn3+ and Fe3+ from their tabulated ones): five-coordinate Co3+, Ni3+, Cu3+ otherwise
                # came from one family, Mn3+ and Fe3+ from it and a dozen M3+ hosts
                for dq3, d3 in _fits(trivalent_five_radius, el, q, cn, d_host).items():
                    if dq3 != dq:
                        out.append(HostSite(parent, str(poscar), i, host, el, q + dq3, cn, d_host, d3, len(eq), dq3,
                                            estimated_radius(el, q + dq3, cn) is not None,
                                            _scaled_elongation(d_o, d3 / d_host), second_state=True,
                                            shell_angle=angle, a_site_neighbours=a_site,
                                            tetrahedral_neighbours=network))
    return out


def _rank(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def order_sites(sites: Iterable[HostSite], element: str) -> list[HostSite]:
    """The build order of ``element``'s candidates (see the module docstring): coordination classes
    in turn, parents round-robin within a class, native sites first within a parent."""
    mine = [s for s in sites if s.element == element]
    by_cn: dict[int, dict[bool, dict[str, list[HostSite]]]] = {}
    for s in mine:
        tier = (s.estimated_radius, s.second_state)
        by_cn.setdefault(s.cn_estimate, {}).setdefault(tier, {}).setdefault(s.parent, []).append(s)
    queues = []
    for cn in sorted(by_cn):
        queue = []
        # sites of tabulated radii first, then those of estimated ones, then second states of
        # estimated radii (Co3+), then of tabulated ones (Mn3+, Fe3+; each added later: the plan's
        # earlier sites keep their order, so a build's cache and snapshots stay as they were)
        for tier in ((False, False), (True, False), (True, True), (False, True)):
            group = by_cn[cn].get(tier, {})
            parents = sorted(group, key=lambda p: _rank(element, cn, p))
            per_parent = [sorted(group[p], key=lambda s: (not s.native, _rank(s.id)))[:MAX_PER_PARENT]
                          for p in parents]
            # round r takes the r-th site of every parent that has one
            queue += [s for rnd in itertools.zip_longest(*per_parent) for s in rnd if s is not None]
        queues.append(queue)
    return [s for rnd in itertools.zip_longest(*queues) for s in rnd if s is not None]


def _share(count: int, target: int) -> float | None:
    """How far ``count`` is toward ``target`` (0-1), or None once it is there."""
    return count / target if count < target else None


def deficit_first(pending: list[Any], have: Counter, target: int = CLASS_TARGET,
                  states: Counter | None = None, state_target: int = STATE_TARGET,
                  elongated: Counter | None = None, elongated_target: int = ELONGATED_TARGET,
                  known: Mapping[str, Mapping[str, Any]] | None = None,
                  parents: Mapping[tuple[str, int], set[str]] | None = None,
                  parent_target: int = PARENT_TARGET,
                  state_parents: Mapping[tuple[str, int, int | None], set[str]] | None = None,
                  state_parent_target: int = STATE_PARENT_TARGET,
                  totals: Counter | None = None, total_target: int = ELEMENT_TARGET,
                  tetrahedra: Counter | None = None, tetrahedral_target: int = TETRAHEDRAL_TARGET,
                  a_site_shells: Counter | None = None, a_site_target: int = A_SITE_TARGET,
                  networks: Counter | None = None, network_target: int = NETWORK_TARGET) -> list[Any]:
    """``pending`` calculations in the order to run them: a host site whose (element, planned
    coordination) has fewer than ``target`` spectra so far (``have``, counted by CrystalNN, plus the
    ones queued ahead of it), or fewer than ``parent_target`` distinct parent structures
    (``parents``, the same way) while the site's parent is new to it, whose (element, planned
    coordination, oxidation state) has fewer
    than ``state_target`` (``states``, counted the same way) or fewer than ``state_parent_target``
    distinct parents (``state_parents``) while the site's parent is new to it, which puts a Jahn-Teller ion in an
    elongated octahedron (:attr:`HostSite.jahn_teller_elongated`) while its element has fewer than
    ``elongated_target`` such spectra (``elongated``, per element), which is a tetrahedron
    (:attr:`HostSite.tetrahedral`) while its (element, oxidation state) has fewer than
    ``tetrahedral_target`` four-coordinate spectra of tetrahedral sites (``tetrahedra``), or fewer
    than ``network_target`` of sites in a network of corner-sharing tetrahedra
    (:attr:`HostSite.tetrahedral_network`, ``networks``) while it is one, which is a
    perovskite-like square pyramid or octahedron (:attr:`HostSite.a_site_shell`) while its (element,
    coordination, oxidation state) has fewer than ``a_site_target`` spectra of such sites
    (``a_site_shells``), or whose
    element has fewer than ``total_target`` spectra (``totals``, per element, counted the same way),
    first, the emptiest first (the share of its target a site's shortest count held when it was
    queued), the rest after in the plan's order.

    ``known`` holds the outcomes already in the cache, by site id (``{"ok": bool, "labels":
    {...}}``, as the build's job records give them): those sites cost nothing, go ahead of all,
    and fill a class only where FEFF succeeded, under the CrystalNN labels they came out with.
    Without it, sites whose FEFF run had failed before took a short class's places on every
    restart: five-coordinate V and Cr (8 and 12 short of 150) were filled by 20 known failures,
    and none of their 556 new sites ran in session 19.

    Only the order changes, never the set: a snapshot assembles the same plan, and a stopped build
    resumes as before. Round-robin over the classes gave the full six-coordinate class (300-385
    spectra per element) a third of the build while four- and five-coordinate classes stood at
    109-157 (session 14). Anything without a planned coordination (prototype families) keeps its
    place in the second group."""
    seen, seen_states, seen_long = Counter(have), Counter(states or {}), Counter(elongated or {})
    seen_totals, seen_tet = Counter(totals or {}), Counter(tetrahedra or {})
    seen_a, seen_net = Counter(a_site_shells or {}), Counter(networks or {})
    seen_parents = {k: set(v) for k, v in (parents or {}).items()}
    seen_state_parents = {k: set(v) for k, v in (state_parents or {}).items()}
    known = known or {}
    done = [g for g in pending if g.id in known]
    for g in done:
        outcome = known[g.id]
        labels = outcome.get("labels") or {}
        cn, q = labels.get("coordination_number"), labels.get("oxidation_state")
        if not outcome.get("ok") or cn is None or cn != cn:
            continue
        state = (g.element, int(cn), int(q) if q is not None and q == q else None)
        seen[state[:2]] += 1
        seen_states[state] += 1
        seen_long[g.element] += bool(getattr(g, "jahn_teller_elongated", False))
        if state[1] == 4 and getattr(g, "tetrahedral", False):
            seen_tet[g.element, state[2]] += 1
        if state[1] == 4 and getattr(g, "tetrahedral_network", False):
            seen_net[g.element, state[2]] += 1
        if state[1] in A_SITE_CNS and getattr(g, "a_site_shell", False):
            seen_a[state] += 1
        seen_totals[g.element] += 1
        if getattr(g, "parent", None) is not None:  # a host site (a family's one parent is counted already)
            seen_parents.setdefault(state[:2], set()).add(g.parent)
            seen_state_parents.setdefault(state, set()).add(g.parent)
    first, rest = [], []
    for g in pending:
        if g.id in known:
            continue
        cn = getattr(g, "cn_estimate", None)
        state = (g.element, cn, getattr(g, "oxidation_state", None))
        long_ = elongated is not None and getattr(g, "jahn_teller_elongated", False)
        tet = tetrahedra is not None and getattr(g, "tetrahedral", False)
        net = networks is not None and getattr(g, "tetrahedral_network", False)
        a_site = a_site_shells is not None and getattr(g, "a_site_shell", False)
        in_class = seen_parents.setdefault((g.element, cn), set())
        parent = getattr(g, "parent", None)
        new_parent = (parents is not None and parent is not None and parent not in in_class
                      and len(in_class) < parent_target)
        in_state = seen_state_parents.setdefault(state, set())
        new_state_parent = (state_parents is not None and parent is not None and parent not in in_state
                            and len(in_state) < state_parent_target)
        # how far along each short count is (0: empty, 1: at its target), for each reason that holds
        fill = [_share(seen[g.element, cn], target),
                len(in_class) / parent_target if new_parent else None,
                _share(seen_states[state], state_target) if states is not None else None,
                len(in_state) / state_parent_target if new_state_parent else None,
                _share(seen_long[g.element], elongated_target) if long_ else None,
                _share(seen_tet[g.element, state[2]], tetrahedral_target) if tet else None,
                _share(seen_net[g.element, state[2]], network_target) if net else None,
                _share(seen_a[state], a_site_target) if a_site else None,
                _share(seen_totals[g.element], total_target) if totals is not None else None]
        if cn is not None and any(f is not None for f in fill):
            seen[g.element, cn] += 1
            seen_states[state] += 1
            seen_long[g.element] += long_
            seen_tet[g.element, state[2]] += tet
            seen_net[g.element, state[2]] += net
            seen_a[state] += a_site
            seen_totals[g.element] += 1
            if parent is not None:
                in_class.add(parent)
                in_state.add(parent)
            first.append((min(f for f in fill if f is not None), g))
        else:
            rest.append(g)
    # emptiest first: the plan interleaves elements, so a class at half its target (five-coordinate
    # V and Cr at 75 of 150 parents, session 21) otherwise waited its element's turn behind classes
    # nearly full; sorting (stably) by the fill at queue time gives each short class its sites as it
    # falls behind, equals in the plan's order
    return done + [g for _, g in sorted(first, key=lambda t: t[0])] + rest


def plan(elements: Iterable[str], per_element: int, root: str | Path | None = None) -> list[HostSite]:
    """The first ``per_element`` planned host sites of each element, elements interleaved."""
    elements = list(elements)
    sites = all_sites(tuple(elements), str(root) if root is not None else None)
    ordered = [order_sites(sites, el)[:per_element] for el in elements]
    return [s for rnd in itertools.zip_longest(*ordered) for s in rnd if s is not None]


@lru_cache(maxsize=4)
def all_sites(elements: tuple[str, ...], root: str | None = None) -> list[HostSite]:
    """Every candidate site in every host under ``root`` (default: the OmniXAS folder), aliovalent
    ones only for an (element, coordination) with fewer than :data:`MIN_ISOVALENT` isovalent; ~1 min."""
    from .omnixas import default_root

    base = Path(root) if root is not None else default_root()
    if not base.is_dir():
        raise FileNotFoundError(f"host structures not found: {base} (set XANES_AGENT_OMNIXAS)")
    out: list[HostSite] = []
    for mat in sorted(p for p in base.iterdir() if (p / "POSCAR").is_file()):
        out.extend(host_sites(mat / "POSCAR", mat.name, elements))
    isovalent = Counter((s.element, s.cn_estimate) for s in out if not s.charge_change and not s.estimated_radius)
    return [s for s in out
            if not s.charge_change or s.second_state or isovalent[s.element, s.cn_estimate] < MIN_ISOVALENT]
