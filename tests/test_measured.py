"""Measured data in: XDI, Athena projects and column files, detector signals, ``xanes-agent predict``.

The files are written here, following the XDI/1.0 specification and (for Athena) by xraylarch's own
project writer, from the project's FEFF10 spectra turned into detector readings: transmission
It = I0 exp(-(a mu + b)) and fluorescence If = c mu I0. No measured spectra from elsewhere are used.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from xanes_agent.data.measured import MeasuredFileError, read_athena, read_columns, read_measured, read_xdi
from xanes_agent.data.signals import Signal, choose_signal, find_edge, find_element

A, B, C = 1.7, 0.3, 0.02  # absorption scale and offset of the sample, fluorescence yield


@pytest.fixture(scope="module")
def cu_spectrum(bundled_library):
    """A held-out project Cu spectrum on a 0.5 eV grid (energy eV, mu), from 30 eV below its first
    computed point (FEFF's Fermi level, below which mu is 0), as a measured one starts well below the
    edge."""
    from xanes_agent.models.features import extend_below_fermi

    sub = bundled_library.where(element="Cu", source="feff10-project", split="test")
    e, mu = extend_below_fermi(sub.energy[0], sub.mu[0])
    grid = np.arange(e[0] + 10.0, e[-1], 0.5)
    return grid, np.interp(grid, e, mu)


@pytest.fixture(scope="module")
def signals(cu_spectrum):
    e, mu = cu_spectrum
    i0 = 1e5 * (1 + 0.1 * np.sin(e / 40.0))  # an incident beam that drifts with energy
    return {"energy": e, "mu": mu, "i0": i0, "itrans": i0 * np.exp(-(A * mu + B)), "ifluor": C * mu * i0}


@pytest.fixture(scope="module")
def store(cu_agent_model):
    from xanes_agent.agent import ModelStore

    return ModelStore(models={"Cu": cu_agent_model})


@pytest.fixture(scope="module")
def reference(store, cu_spectrum):
    """The predictions on the clean spectrum: what every file route must reproduce."""
    e, mu = cu_spectrum
    return store.predictor("Cu").update(e, mu).predictions


def write_xdi(path, cols: dict[str, np.ndarray], units: dict[str, str] | None = None, element: str | None = "Cu",
              reverse: bool = False, extra_header: tuple[str, ...] = ()):
    units = units or {"energy": "eV"}
    names = list(cols)
    lines = ["# XDI/1.0 xanes-agent-tests/1.0"]
    lines += [f"# Column.{i + 1}: {n}" + (f" {units[n]}" if n in units else "") for i, n in enumerate(names)]
    if element:
        lines += [f"# Element.symbol: {element}", "# Element.edge: K"]
    lines += ["# Mono.d_spacing: 3.13555", "# Facility.name: Simulated Light Source", "# Beamline.name: SIM-1",
              "# Scan.start_time: 2026-11-28T09:00:00", *extra_header,
              "# ///", "# a FEFF10 spectrum of the project as detector readings", "# second comment line",
              "#----------", "# " + " ".join(names)]
    rows = np.column_stack([cols[n] for n in names])
    if reverse:
        rows = rows[::-1]
    lines += [" ".join(f"{v:.10g}" for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _same(rec, reference, tol=1e-6):
    assert rec["edge_located"]
    cn = rec["predictions"]["coordination_number"]
    assert cn["prediction"] == reference["coordination_number"]["prediction"]
    assert cn["probability"] == pytest.approx(float(reference["coordination_number"]["probability"]), abs=tol)
    for name in ("mean_nn_distance", "charge"):
        assert rec["predictions"][name]["prediction"] == pytest.approx(float(reference[name]["prediction"]), abs=tol)


# -- signals and conventions ---------------------------------------------------------------------

def test_signals_are_chosen_from_names_and_flags_win():
    assert choose_signal(["energy", "I0", "It"]) == (Signal("transmission", ("I0", "It")),
                                                     "transmission ln(I0/It) from the field names")
    sig, note = choose_signal(["energy", "i0", "ifluor"])
    assert sig == Signal("fluorescence", ("ifluor", "i0")) and "fluorescence" in note
    sig, note = choose_signal(["energy", "i0", "itrans", "mutrans"])
    assert sig == Signal("mu", ("mutrans",)) and "mu taken from" in note
    sig, note = choose_signal(["energy", "i0", "itrans", "xspress3_ifluor"], mode="fluorescence")
    assert sig == Signal("fluorescence", ("xspress3_ifluor", "i0")) and note == ""
    _, note = choose_signal(["i0", "itrans", "ifluor"])
    assert "--mode fluorescence" in note  # both present: the guess says how to take the other
    with pytest.raises(ValueError, match="It field 'trans' not found"):
        choose_signal(["i0", "itrans"], it="trans")
    with pytest.raises(ValueError, match="no mu, I0/It or If/I0 fields among energy, det"):
        choose_signal(["energy", "det"])


def test_mu_from_detector_signals_and_impossible_readings():
    i0 = np.array([1e5, 1e5, 0.0, 1e5])
    it = np.array([5e4, 1e4, 1e4, -1.0])
    mu = Signal("transmission", ("i0", "it")).mu({"i0": i0, "it": it})
    np.testing.assert_allclose(mu[:2], np.log([2.0, 10.0]))
    assert np.isnan(mu[2:]).all()  # zero or negative intensity: not a number to learn from
    np.testing.assert_allclose(Signal("fluorescence", ("if", "i0")).mu({"if": 3.0, "i0": 2.0}), 1.5)


def test_element_and_edge_conventions():
    assert find_element({"element": "Cu"}) == ("Cu", "element")
    assert find_element({"XDI": {"Element": {"symbol": "fe"}}}) == ("Fe", "XDI.Element.symbol")
    assert find_element({"Element.symbol": "Mn"}) == ("Mn", "Element.symbol")
    assert find_edge({"xdi": {"element": {"edge": "k"}}}) == ("K", "XDI.Element.edge")
    assert find_element({"sample": "x"}) == (None, None)


# -- file formats --------------------------------------------------------------------------------

def test_xdi_transmission_is_read_by_its_column_labels_and_predicts_like_the_clean_spectrum(
        tmp_path, signals, store, reference):
    from larch.io import read_xdi as larch_read_xdi

    from xanes_agent.agent.offline import predict_measured

    path = write_xdi(tmp_path / "cu_trans.xdi", {k: signals[k] for k in ("energy", "i0", "itrans")})
    independent = larch_read_xdi(str(path))  # the file is valid XDI for the field's own reader
    assert independent.element == "Cu" and list(independent.array_labels) == ["energy", "i0", "itrans"]
    [ms] = read_xdi(path)
    assert ms.format == "XDI" and ms.element == "Cu" and ms.edge == "K" and list(ms.columns) == ["i0", "itrans"]
    assert ms.meta["Facility.name"] == "Simulated Light Source" and len(ms.meta["comments"]) == 2
    rec = predict_measured(ms, store)
    assert rec["signal"] == "transmission ln(i0/itrans)" and rec["element_from"] == "file field XDI.Element.symbol"
    _same(rec, reference)
    assert "interval90" in rec["predictions"]["mean_nn_distance"] and isinstance(rec["in_domain"], bool)
    json.dumps(rec)  # plain data


def test_xdi_in_kev_reversed_without_element_is_converted_sorted_and_guessed(tmp_path, signals, store, reference):
    from xanes_agent.agent.offline import predict_measured

    cols = {"energy": signals["energy"] / 1000.0, "i0": signals["i0"], "ifluor": signals["ifluor"]}
    path = write_xdi(tmp_path / "fluor_kev.xdi", cols, units={"energy": "keV"}, element=None, reverse=True)
    [ms] = read_xdi(path)
    assert ms.element is None and np.all(np.diff(ms.energy) > 0)
    np.testing.assert_allclose(ms.energy, signals["energy"], rtol=1e-9)
    rec = predict_measured(ms, store)
    assert rec["element"] == "Cu" and rec["element_from"] == "guessed from the edge position"
    assert rec["signal"] == "fluorescence ifluor/i0"
    assert any("converted from keV" in n for n in rec["notes"]) and any("sorted" in n for n in rec["notes"])
    _same(rec, reference)


def test_xdi_errors_name_the_problem(tmp_path, signals):
    angle = write_xdi(tmp_path / "angle.xdi", {"angle": np.linspace(20, 21, 50), "i0": np.ones(50),
                                                "itrans": np.ones(50)}, units={"angle": "degrees"})
    with pytest.raises(MeasuredFileError, match="mono angle"):
        read_xdi(angle)
    bad = tmp_path / "bad.xdi"
    bad.write_text("# XDI/1.0\n# Column.1: energy eV\n# Column.2: mu\n#----\n8900 1\n8901 x\n")
    with pytest.raises(MeasuredFileError, match=r"bad.xdi:6: not a row of numbers"):
        read_xdi(bad)
    (tmp_path / "blob.xdi").write_bytes(b"\x00\x01binary" * 100)
    with pytest.raises(MeasuredFileError, match="not a text file"):
        read_measured(tmp_path / "blob.xdi")
    (tmp_path / "empty.xdi").write_text("# XDI/1.0\n# Column.1: energy eV\n")
    with pytest.raises(MeasuredFileError, match="no data lines"):
        read_xdi(tmp_path / "empty.xdi")


def test_athena_project_groups_are_read_without_evaluating_anything(tmp_path, signals, store, reference):
    from larch import Group
    from larch.io import create_athena

    from xanes_agent.agent.offline import predict_measured

    path = tmp_path / "cu_project.prj"
    prj = create_athena(str(path))
    e, mu = signals["energy"], signals["mu"]
    prj.add_group(Group(energy=e, mu=A * mu + B, i0=signals["i0"], filename="CuO pellet", label="CuO pellet",
                        datatype="xmu"))
    prj.add_group(Group(energy=e, mu=2.0 * mu, filename="Cu sample 2", label="Cu sample 2", datatype="xmu"))
    prj.save(use_gzip=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzipped, as Athena writes it
    text = gzip.decompress(path.read_bytes()).decode()
    assert "$old_group" in text and "@args" in text
    groups = read_athena(path)
    assert [g.name for g in groups] == ["cu_project.prj:CuO pellet", "cu_project.prj:Cu sample 2"]
    assert all(g.element == "Cu" and g.format == "Athena" for g in groups)
    for g in groups:
        rec = predict_measured(g, store)
        assert rec["signal"] == "mu column 'mu'"
        _same(rec, reference)
    # a Perl statement in a project is text, never code
    evil = tmp_path / "evil.prj"
    evil.write_text(text.replace("1;\n", "system('touch PWNED');\n1;\n", 1))
    assert len(read_athena(evil)) == 2 and not (tmp_path / "PWNED").exists()


def test_column_files_with_named_or_numbered_columns(tmp_path, signals, store, reference):
    from xanes_agent.agent.offline import predict_measured

    e, i0, it = signals["energy"], signals["i0"], signals["itrans"]
    named = tmp_path / "scan.csv"
    named.write_text("# beamline export\nenergy_keV,I0,It\n" + "\n".join(
        f"{a / 1000:.8f},{b:.10g},{c:.10g}" for a, b, c in zip(e, i0, it)))
    [ms] = read_columns(named)
    assert list(ms.columns) == ["I0", "It"] and ms.energy_note == "converted from keV"
    _same(predict_measured(ms, store), reference, tol=1e-4)
    numbered = tmp_path / "scan.dat"
    numbered.write_text("\n".join(f"{b:.8g} {a:.4f} {c:.8g}" for a, b, c in zip(e, i0, it)))
    [ms] = read_columns(numbered, energy_column="2")
    assert list(ms.columns) == ["1", "3"]
    with pytest.raises(ValueError, match="no mu, I0/It or If/I0 fields among 1, 3"):
        predict_measured(ms, store)
    _same(predict_measured(ms, store, signal={"mode": "transmission", "i0": "1", "it": "3"}), reference)
    with pytest.raises(MeasuredFileError, match="no column 'x'"):
        read_columns(numbered, energy_column="x")


def test_predict_command_on_each_format_with_json_and_png(tmp_path, signals, cu_agent_model, capsys):
    from xanes_agent.cli import main

    models = tmp_path / "models"
    cu_agent_model.save(models / "Cu-pointwise-post_edge.npz")
    xdi = write_xdi(tmp_path / "a.xdi", {k: signals[k] for k in ("energy", "i0", "itrans")})
    cols = tmp_path / "b.txt"
    cols.write_text("# energy i0 ifluor\n" + "\n".join(
        f"{a:.4f} {b:.6g} {c:.6g}" for a, b, c in zip(signals["energy"], signals["i0"], signals["ifluor"])))
    rc = main(["predict", str(xdi), str(cols), "--models", str(models), "--png", str(tmp_path / "png")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "a.xdi  [XDI]  Cu K-edge (file field XDI.Element.symbol)  transmission ln(i0/itrans)" in out
    assert "b.txt  [columns]  Cu K-edge (guessed from the edge position)  fluorescence ifluor/i0" in out
    assert "coordination number" in out and "68 %:" in out and "model window covered 100 %" in out
    # a bundle calibrated within one code only: its intervals say so (measured data want across-codes ones)
    assert "(same-code calibration)" in out and "(across codes)" not in out
    for stem in ("a.xdi", "b.txt"):
        assert (tmp_path / "png" / f"{stem}.png").stat().st_size > 10_000
    rc = main(["predict", str(xdi), "--models", str(models), "--json"])
    recs = json.loads(capsys.readouterr().out)
    assert rc == 0 and recs[0]["element"] == "Cu"
    assert recs[0]["predictions"]["coordination_number"]["prediction"] in (4, 5, 6)
    # one unreadable file among good ones: reported, the others still predicted, exit status 1
    junk = tmp_path / "junk.xdi"
    junk.write_text("# XDI/1.0\n# Column.1: angle degrees\n#---\n1 2\n2 3\n3 4\n4 5\n5 6\n")
    rc = main(["predict", str(junk), str(xdi), "--models", str(models)])
    captured = capsys.readouterr()
    assert rc == 1 and "junk.xdi: energy is given as a mono angle" in captured.err and "a.xdi" in captured.out
