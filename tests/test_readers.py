import json

import numpy as np
import pytest

from xanes_agent.data import (
    DataFormatError,
    SpectrumCollection,
    read_library,
    read_mp_json,
    read_poscar,
    read_spectrum,
    read_two_column,
    read_xmu,
    write_library,
)


def test_xmu_real_file(cu_xmu):
    s = read_xmu(cu_xmu)
    assert s.element == "Cu"  # from the "Abs Z=29" header line
    assert len(s.energy) == 173 and np.all(np.diff(s.energy) > 0)
    assert 8970 < s.energy[0] < 9000
    assert "FEFF 9.9.1" in s.provenance["code"]


@pytest.mark.parametrize("mangle, message", [
    (lambda t: t.replace("8986.143", "8986.1x3"), "expected numbers"),
    (lambda t: "\n".join(ln[:30] if not ln.startswith("#") else ln for ln in t.splitlines()), "at least 6 columns"),
    (lambda t: "\n".join(ln for ln in t.splitlines() if ln.startswith("#")), "no data rows"),
    (lambda t: t.replace("8986.143", "8980.000"), "increase strictly"),
    (lambda t: t.replace("4.82360E-02", "nan"), "non-finite"),
])
def test_xmu_malformed(cu_xmu, tmp_path, mangle, message):
    bad = tmp_path / "xmu.dat"
    bad.write_text(mangle(cu_xmu.read_text()))
    with pytest.raises(DataFormatError, match=message) as exc:
        read_xmu(bad)
    assert str(bad) in str(exc.value)


def test_xmu_error_names_line(cu_xmu, tmp_path):
    text = cu_xmu.read_text().replace("8986.143", "8986.1x3")
    bad = tmp_path / "xmu.dat"
    bad.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "8986.1x3" in ln)
    with pytest.raises(DataFormatError, match=f"xmu.dat:{line}:"):
        read_xmu(bad)


def _mp_doc(s, structure=None):
    doc = {"spectrum": {"x": s.energy.tolist(), "y": s.mu.tolist()}, "absorbing_element": "Cu", "edge": "K",
           "material_id": "mp-1036393", "absorbing_index": 15}
    if structure is not None:
        doc["structure"] = structure.as_dict()
    return doc


def test_mp_json_hand_written(cu_xmu, omnixas_root, tmp_path):
    s = read_xmu(cu_xmu)
    st = read_poscar(omnixas_root / "mp-1036393" / "POSCAR")
    p = tmp_path / "mp.json"
    p.write_text(json.dumps(_mp_doc(s, st)))
    m = read_mp_json(p)
    assert m.element == "Cu" and m.edge == "K"
    np.testing.assert_allclose(m.energy, s.energy)
    assert m.structure.composition.reduced_formula == st.composition.reduced_formula
    # top-level x/y variant
    flat = {"x": s.energy.tolist(), "y": s.mu.tolist(), "absorbing_element": "Cu", "edge": "K"}
    p.write_text(json.dumps(flat))
    assert len(read_mp_json(p).mu) == len(s.mu)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("absorbing_element"), "absorbing_element"),
    (lambda d: d["spectrum"].pop("y"), "missing 'y'"),
    (lambda d: d["spectrum"].update(y=[1, 2]), "equal-length"),
    (lambda d: d["spectrum"].update(x=["a"] * len(d["spectrum"]["x"])), "lists of numbers"),
    (lambda d: d.update(structure={"lattice": 3}), "not a valid pymatgen structure"),
])
def test_mp_json_malformed(cu_xmu, tmp_path, mutate, message):
    doc = _mp_doc(read_xmu(cu_xmu))
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=message):
        read_mp_json(p)


def test_mp_json_invalid_json_names_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{\n "x": [1, 2,\n ]\n}')
    with pytest.raises(DataFormatError, match=r"broken.json:3: invalid JSON"):
        read_mp_json(p)


def test_two_column_and_csv(cu_xmu, tmp_path):
    s = read_xmu(cu_xmu)
    p = tmp_path / "cu.csv"
    p.write_text("energy,mu\n" + "\n".join(f"{e},{m}" for e, m in zip(s.energy, s.mu)))
    t = read_spectrum(p, element="Cu")
    np.testing.assert_allclose(t.mu, s.mu)
    p2 = tmp_path / "cu.txt"
    p2.write_text("# comment\n" + "\n".join(f"{e} {m}" for e, m in zip(s.energy, s.mu)))
    assert len(read_two_column(p2, "Cu").energy) == len(s.energy)
    p2.write_text("1 2\n3 four\n")
    with pytest.raises(DataFormatError, match=r"cu.txt:2: expected numbers"):
        read_two_column(p2, "Cu")
    with pytest.raises(DataFormatError, match="carry no element"):
        read_spectrum(p)


def test_poscar(omnixas_root, tmp_path):
    st = read_poscar(omnixas_root / "mp-1036393" / "POSCAR")
    assert st[15].specie.symbol == "Cu"
    bad = tmp_path / "POSCAR"
    bad.write_text("not a poscar\n1.0\n")
    with pytest.raises(DataFormatError, match="not a valid POSCAR"):
        read_poscar(bad)


def test_library_round_trip_and_errors(cu_xmu, tmp_path):
    s = read_xmu(cu_xmu)
    s.labels = {"coordination_number": 6.0, "mean_nn_distance": 2.14}
    s.provenance["material_id"] = "mp-1036393"
    coll = SpectrumCollection.from_spectra([s, s], source=["a", "b"], split=["train", "test"])
    p = tmp_path / "lib.npz"
    write_library(coll, p)
    back = read_library(p)
    assert len(back) == 2 and list(back.source) == ["a", "b"]
    np.testing.assert_allclose(back.energy[0], s.energy, atol=1e-3)
    np.testing.assert_allclose(back.mu[1], s.mu, rtol=1e-6)
    assert back.labels["coordination_number"][0] == 6.0
    assert np.isnan(back.labels["bader_charge"]).all()  # never filled with something else
    assert len(back.where(source="b", split="test")) == 1
    # a library written before a label existed reads it as unknown; any other missing label is damage
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **{k: v for k, v in arrays.items() if k != "label_feff_ground_charge_transfer"})
    assert np.isnan(read_library(old).labels["feff_ground_charge_transfer"]).all()
    np.savez_compressed(old, **{k: v for k, v in arrays.items() if k != "label_bader_charge"})
    with pytest.raises(DataFormatError, match="label_bader_charge"):
        read_library(old)
    p.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        read_library(p)


def test_more_malformed_inputs_are_data_format_errors(tmp_path):
    """Issue 15: an impossible Z, labels that are not an object, a library with corrupt offsets or
    NaN spectra: each a DataFormatError naming the file, never another exception."""
    import json

    import numpy as np
    import pytest

    from xanes_agent.data import DataFormatError, read_spectrum
    from xanes_agent.data.library import load_bundled_library
    from xanes_agent.data.readers import read_library, read_mp_json, write_library

    xmu = tmp_path / "xmu.dat"
    rows = "\n".join(f"{8970 + i} 0 0 {0.1 * i} 0 0" for i in range(30))
    xmu.write_text("# Abs Z=999\n#  omega e k mu mu0 chi\n" + rows + "\n")
    with pytest.raises(DataFormatError, match="element"):
        read_spectrum(xmu)
    doc = {"spectrum": {"x": [1.0, 2.0, 3.0], "y": [0.1, 0.2, 0.3]}, "absorbing_element": "Cu", "labels": [1, 2]}
    for labels in ([1, 2], {"coordination_number": "four"}):
        (tmp_path / "mp.json").write_text(json.dumps({**doc, "labels": labels}))
        with pytest.raises(DataFormatError, match="labels"):
            read_mp_json(tmp_path / "mp.json")
    lib = load_bundled_library()[:5]
    good = tmp_path / "lib.npz"
    write_library(lib, good)
    for key, change in (("offsets", lambda a: a * 3), ("mu", lambda a: np.full_like(a, np.nan))):
        with np.load(good, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[key] = change(arrays[key])
        bad = tmp_path / f"bad_{key}.npz"
        np.savez_compressed(bad, **arrays)
        with pytest.raises(DataFormatError, match="corrupt library"):
            read_library(bad)


def test_cli_misuse_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    """Issue 15: misuse of the command line ends in one line naming what was wrong, exit 2."""

    from xanes_agent.cli import main

    junk = tmp_path / "junk.txt"
    junk.write_text("junk\n")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    cases = [["train", "--source", "nope"], ["train", "--library", str(junk)], ["train", "--seeds", "0"],
             ["info", str(empty)], ["info", str(junk)], ["evaluate", str(junk)], ["simulate", "--flux", "-1"],
             ["simulate", "--sample-id", "nope"], ["replay", str(junk), "--models", str(tmp_path)],
             ["library", "info", "--library", str(junk)], ["build-library", "--hosts-per-element", "-5"],
             ["build-library", "--parameters", "nope"], ["demo", "--sample-id", "nope"]]
    for argv in cases:
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own refusal
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        assert "Traceback" not in err and "error" in err, (argv, err)


def test_any_text_is_read_or_refused_as_a_data_format_error(tmp_path):
    """Property-based: whatever text a file holds, the readers return a spectrum or raise
    DataFormatError naming the file, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from xanes_agent.data import DataFormatError, read_spectrum

    lines = st.lists(st.one_of(
        st.text(max_size=30), st.just("# Abs Z=29"), st.just("# Abs Z=0"),
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=7).map(
            lambda v: " ".join(repr(x) for x in v))), max_size=40)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(lines, st.sampled_from(["xmu.dat", "s.json", "s.csv"]))
    def check(content, name):
        path = tmp_path / name
        path.write_text("\n".join(content), encoding="utf-8", errors="surrogatepass")
        try:
            read_spectrum(path, element=None if name != "s.csv" else "Cu")
        except DataFormatError as exc:
            assert str(path) in str(exc)

    check()
