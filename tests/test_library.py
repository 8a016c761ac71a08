"""The committed reference library (issue 2): sources kept apart, labels, held-out split, provenance, Table 1."""

import numpy as np

from xanes_agent.data.edges import ELEMENTS
from xanes_agent.data.library import PROJECT_SOURCE, split_for, table1


def test_project_source_covers_every_element_with_two_cn_classes(bundled_library):
    project = bundled_library.where(source=PROJECT_SOURCE)
    assert sorted(set(project.element.tolist())) == sorted(ELEMENTS)
    for el in ELEMENTS:
        cn = project.where(element=el).labels["coordination_number"]
        assert len({int(c) for c in cn if c in (4, 5, 6)}) >= 2, el
        assert np.all(np.isfinite(project.where(element=el).labels["mean_nn_distance"])), el
    # oxidation state by construction, never stored as a Bader charge
    assert np.all(np.isfinite(project.labels["oxidation_state"]))
    assert np.isnan(bundled_library.labels["bader_charge"]).all()


def test_library_reaches_300_feff10_spectra_per_element(bundled_library):
    """Issue 2's size: >= 300 per element from the project's own FEFF10 runs alone (2,400+ in all)."""
    project = bundled_library.where(source=PROJECT_SOURCE)
    counts = {el: len(project.where(element=el)) for el in ELEMENTS}
    assert min(counts.values()) >= 300, counts
    assert len(project) >= 2400


def test_sources_are_distinguishable(bundled_library):
    assert set(bundled_library.source.tolist()) == {PROJECT_SOURCE, "omnixas-feff9"}
    assert set(bundled_library.where(source="omnixas-feff9").element.tolist()) == {"Cu"}


def test_held_out_split_is_by_material_and_reproducible(bundled_library):
    mids = bundled_library.material_id
    assert all(split_for(m) == s for m, s in zip(mids[::97], bundled_library.split[::97], strict=True))
    test_mids = set(mids[bundled_library.split == "test"].tolist())
    train_mids = set(mids[bundled_library.split != "test"].tolist())
    assert not test_mids & train_mids  # a material never on both sides
    for src in (PROJECT_SOURCE, "omnixas-feff9"):
        sub = bundled_library.where(source=src)
        frac = len(set(sub.material_id[sub.split == "test"].tolist())) / len(set(sub.material_id.tolist()))
        assert 0.05 < frac < 0.15, (src, frac)


def test_provenance_and_failures_are_recorded(bundled_library):
    project = bundled_library.where(source=PROJECT_SOURCE)
    prov = project.spectrum(0).provenance
    assert prov["feff_parameters"] == bundled_library.meta["feff_parameters"]["name"] == "reduced-v1"
    assert {"family", "seed", "structure_params", "absorber_index"} <= set(prov)
    ids = set(project.material_id.tolist())
    assert not ids & {f["id"] for f in bundled_library.meta["failures"]}  # a failure is never kept
    assert all(f["reason"] for f in bundled_library.meta["failures"])


def test_table1_counts(bundled_library):
    rows = {tuple(line.split()[:2]): line.split() for line in table1(bundled_library).splitlines()[1:-1]}
    for (src, el), cols in rows.items():
        sub = bundled_library.where(source=src, element=el)
        assert int(cols[2]) == len(sub)
        assert [int(c) for c in cols[3:6]] == [int(np.sum(sub.labels["coordination_number"] == k)) for k in (4, 5, 6)]
    left_out = sum(int(cols[10]) for (src, _), cols in rows.items() if src == PROJECT_SOURCE)
    assert left_out == len(bundled_library.meta["failures"])


def test_a_build_without_the_feff_cache_resumes_from_the_committed_library(bundled_library, tmp_path):
    """A fresh machine has no FEFF cache: the build keeps the library's spectra and computes nothing."""
    from xanes_agent.data.library import build_library, bundled_library_path

    out = tmp_path / "lib.npz"
    lib = build_library(out, per_element=3, elements=["Ti", "Cu"], workers=1, cache_dir=tmp_path / "cache",
                        include_omnixas=False, progress=False, resume_from=bundled_library_path())
    assert not (tmp_path / "cache" / "feff").exists() or not any((tmp_path / "cache" / "feff").iterdir())
    assert len(lib) == 6 and sorted(set(lib.element.tolist())) == ["Cu", "Ti"]
    project = bundled_library.where(source=PROJECT_SOURCE)
    index = {m: i for i, m in enumerate(project.ids.tolist())}
    for i, sid in enumerate(lib.ids.tolist()):
        j = index[sid]
        np.testing.assert_array_equal(lib.energy[i], project.energy[j])
        np.testing.assert_array_equal(lib.mu[i], project.mu[j])
        for k in lib.labels:
            np.testing.assert_array_equal(lib.labels[k][i], project.labels[k][j])
        assert lib.spectrum(i).provenance == project.spectrum(j).provenance


def test_only_spectra_of_the_same_structure_and_parameters_are_reused(bundled_library):
    import json

    from xanes_agent.data.feff import PARAMETER_SETS, REDUCED_PARAMETERS
    from xanes_agent.data.library import reusable_spectra
    from xanes_agent.data.structures import generate

    gens = list(generate(["Fe"], 4))
    ids = [g.id for g in gens]
    project = bundled_library.where(source=PROJECT_SOURCE)
    rows = project[np.isin(project.ids, ids)]
    assert len(rows) == 4
    assert sorted(reusable_spectra(rows, gens, REDUCED_PARAMETERS)) == sorted(ids)
    other = next(p for p in PARAMETER_SETS.values() if p.name != REDUCED_PARAMETERS.name)
    assert reusable_spectra(rows, gens, other) == {}
    # a structure generated differently today (here: another strain) is computed again
    prov = [json.loads(p) for p in rows.provenance]
    prov[0]["structure_params"]["a"] *= 1.01
    prov[1]["absorber_index"] += 1
    rows.provenance = np.array([json.dumps(p) for p in prov])
    assert sorted(reusable_spectra(rows, gens, REDUCED_PARAMETERS)) == sorted(rows.ids[2:].tolist())


def test_omnixas_labels_come_from_the_committed_library(bundled_library, omnixas_root, tmp_path):
    """Without the label cache, the OmniXAS sites the library holds are not labelled again."""
    from xanes_agent.data.library import omnixas_collection

    coll = omnixas_collection(omnixas_root, cache_dir=tmp_path, progress=False, limit=25, prior=bundled_library)
    assert not (tmp_path / "omnixas_labels.json").exists()  # nothing was derived, so nothing cached
    ref = bundled_library.where(source="omnixas-feff9")
    index = {m: i for i, m in enumerate(ref.ids.tolist())}
    assert len(coll) == 25
    for i, sid in enumerate(coll.ids.tolist()):
        j = index[sid]
        for k in coll.labels:
            np.testing.assert_array_equal(np.float32(coll.labels[k][i]), np.float32(ref.labels[k][j]), err_msg=k)
        np.testing.assert_array_equal(coll.mu[i].astype(np.float32), ref.mu[j].astype(np.float32))
        assert coll.spectrum(i).provenance == ref.spectrum(j).provenance


def test_left_out_calculations_stay_recorded_when_the_library_is_rewritten_without_feff(bundled_library, tmp_path):
    from xanes_agent.data.library import compute_project_spectra
    from xanes_agent.data.structures import generate

    ids = {g.id for g in generate(["Mn"], 237)}
    mn = bundled_library.where(source=PROJECT_SOURCE, element="Mn")
    failed = [f for f in bundled_library.meta["failures"] if f["id"] in ids]
    assert failed  # the committed library has a left-out Mn calculation among these (wurtzite-Mn-161)
    spectra, failures = compute_project_spectra(["Mn"], 237, tmp_path, progress=False, cached_only=True,
                                                prior=bundled_library)
    assert sorted(s.id for s in spectra) == sorted(set(mn.ids.tolist()) & ids)
    assert sorted(failures, key=lambda f: f["id"]) == sorted(failed, key=lambda f: f["id"])
