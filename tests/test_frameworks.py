"""Structure types by cation-anion framework: a family leaves training with its whole type."""

import json
import subprocess
import sys

import pytest

from xanes_agent.data.frameworks import family_types, framework, hosts_of_family_types, same_type


def _rocksalt_host(a=4.21):
    """MgO doped with one Cu in a 2x2x2 supercell: a host of the rocksalt type."""
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s.make_supercell([2, 2, 2])
    s.replace(0, "Cu")
    return s


def _rutile_host():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                     [[0, 0, 0], [0.305, 0.305, 0]])


def test_families_of_one_framework_share_a_type():
    types = family_types()
    assert types["spinel_oct"] == types["spinel_tet"]
    assert types["perovskite"] == types["perovskite_la"]
    assert types["rocksalt"] == types["layered_limo2"]  # LiCoO2 is an ordered rocksalt
    assert types["corundum"] == types["ilmenite"]
    assert types["zircon_m4"] == types["zircon_m5"]
    # the square pyramids of the O-deficient double perovskite are not the perovskite's octahedra,
    # and the TiO2 polymorphs are different frameworks
    assert len({types["pyramidal_112"], types["perovskite"], types["rutile"], types["anatase"],
                types["rocksalt"], types["tenorite"], types["wurtzite"]}) == 7


def test_a_doped_host_is_of_its_parent_type_whatever_the_cations():
    rocksalt, rutile = framework(_rocksalt_host()), framework(_rutile_host())
    assert same_type(rocksalt, framework(_rocksalt_host(a=4.6)))  # another lattice constant, one type
    assert not same_type(rocksalt, rutile)


def test_hosts_are_sorted_into_family_types_and_the_answers_kept(tmp_path):
    root = tmp_path / "hosts"
    for name, s in (("mp-rs", _rocksalt_host()), ("mp-ru", _rutile_host())):
        (root / name).mkdir(parents=True)
        s.to(filename=str(root / name / "POSCAR"), fmt="poscar")
    cache = tmp_path / "frameworks.json"
    types = family_types()
    got = hosts_of_family_types(["mp-rs", "mp-ru", "mp-missing"], root, cache_file=cache)
    assert got[types["rocksalt"]] == {"mp-rs"} and got[types["rutile"]] == {"mp-ru"}
    assert sum(len(v) for v in got.values()) == 2  # a parent without a POSCAR is of no type
    assert json.loads(cache.read_text()) == {"mp-rs": types["rocksalt"], "mp-ru": types["rutile"]}

    for p in root.glob("*/POSCAR"):  # the cache answers without the structures
        p.unlink()
    assert hosts_of_family_types(["mp-rs", "mp-ru"], root, cache_file=cache) == got

    cache.write_text("not json{")  # a damaged cache is recomputed, not trusted
    assert hosts_of_family_types(["mp-rs"], root, cache_file=cache)[types["rocksalt"]] == set()
    _rocksalt_host().to(filename=str(root / "mp-rs" / "POSCAR"), fmt="poscar")
    assert hosts_of_family_types(["mp-rs"], root, cache_file=cache)[types["rocksalt"]] == {"mp-rs"}
    assert json.loads(cache.read_text()) == {"mp-rs": types["rocksalt"]}


@pytest.mark.parametrize("bad", ['["a list"]', '{"mp-rs": 3}'])
def test_a_cache_of_the_wrong_shape_is_not_trusted(tmp_path, bad):
    root = tmp_path / "hosts"
    (root / "mp-rs").mkdir(parents=True)
    _rocksalt_host().to(filename=str(root / "mp-rs" / "POSCAR"), fmt="poscar")
    cache = tmp_path / "frameworks.json"
    cache.write_text(bad)
    got = hosts_of_family_types(["mp-rs"], root, cache_file=cache)
    assert got[family_types()["rocksalt"]] == {"mp-rs"}


def test_the_library_keeps_each_hosts_type_and_groups_by_it_without_the_structures(bundled_library, tmp_path):
    import numpy as np

    from xanes_agent.data.library import (
        STRUCTURE_TYPES_KEY,
        annotate_structure_types,
        parent_groups,
        type_groups,
    )
    from xanes_agent.data.readers import read_library, write_library
    from xanes_agent.models.evaluation import joint_group_folds

    cu = bundled_library.where(source="feff10-project", element="Cu")
    parents = parent_groups(cu)
    hosts = sorted({p for p in parents.tolist() if not p.startswith("family:")})[:3]
    keep = np.isin(parents, ["family:rocksalt", "family:layered_limo2"] + hosts)
    lib = cu[np.flatnonzero(keep)]
    lib.meta.pop(STRUCTURE_TYPES_KEY, None)
    root = tmp_path / "hosts"  # stand-in structures under the real hosts' ids: a rocksalt and a rutile
    for name, s in ((hosts[0], _rocksalt_host()), (hosts[1], _rutile_host())):
        (root / name).mkdir(parents=True)
        s.to(filename=str(root / name / "POSCAR"), fmt="poscar")
    types = family_types()
    annotate_structure_types(lib, root, cache_file=tmp_path / "frameworks.json")
    assert {k: v for k, v in lib.meta[STRUCTURE_TYPES_KEY].items() if not k.startswith("family:")} == {
        hosts[0]: types["rocksalt"], hosts[1]: types["rutile"]}

    write_library(lib, tmp_path / "lib.npz")  # read back without the structures
    back = read_library(tmp_path / "lib.npz")
    groups = dict(zip(parent_groups(back).tolist(), type_groups(back).tolist()))
    rocksalt = f"type:{types['rocksalt']}"
    assert groups["family:rocksalt"] == groups["family:layered_limo2"] == groups[hosts[0]] == rocksalt
    assert groups[hosts[1]] == f"type:{types['rutile']}"  # a type no Cu family has
    assert groups[hosts[2]] == hosts[2]  # of no family's type: its own group
    folds, _ = joint_group_folds(type_groups(back), np.zeros(0, str), 5)  # a type lies in one fold
    assert len(set(folds[type_groups(back) == rocksalt].tolist())) == 1

    back.meta[STRUCTURE_TYPES_KEY] = {hosts[2]: "", hosts[0]: 7}  # from a file: only text is a type
    assert type_groups(back)[parent_groups(back) == hosts[2]][0] == hosts[2]
    assert type_groups(back)[parent_groups(back) == hosts[0]][0] == hosts[0]
    back.meta[STRUCTURE_TYPES_KEY] = ["not", "a", "table"]
    assert (type_groups(back) == parent_groups(back)).all()

    # training groups by type where pymatgen (an extra: the build's) is not installed
    code = ("import sys; sys.modules['pymatgen'] = None\n"
            "from xanes_agent.data.library import type_groups\n"
            "from xanes_agent.data.readers import read_library\n"
            "print(sorted(set(type_groups(read_library(sys.argv[1])).tolist())))")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lib.npz")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert rocksalt in run.stdout

