"""Structure types by cation-anion framework: a family leaves training with its whole type."""

import json

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
