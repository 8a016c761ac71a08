"""The committed reference library (issue 2): sources kept apart, labels, held-out split, provenance, Table 1."""

from pathlib import Path

import numpy as np
import pytest

from xanes_agent.data.library import PROJECT_SOURCE, environments, parent_groups, split_for, table1
from xanes_agent.foundation.edges import ELEMENTS


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
    from xanes_agent.data.feff import PARAMETER_SETS

    built_with = PARAMETER_SETS[bundled_library.meta["feff_parameters"]["name"]]
    assert built_with.name in ("reduced-v1", "reduced-v2", "reduced-v2-rpa")
    # each row names its own set: the build's, one whose spectra the build's reproduces, or one of
    # an earlier build the library keeps; its id carries that set's suffix
    import json

    from xanes_agent.data.library import site_id

    kept = set(bundled_library.meta.get("kept_feff_parameters", {}))
    used = {json.loads(p).get("feff_parameters") for p in project.provenance}
    assert used <= set(built_with.spectra_of) | kept
    assert prov["feff_parameters"] in used
    for i, (sid, p) in enumerate(zip(project.ids.tolist(), project.provenance.tolist())):
        own = PARAMETER_SETS[json.loads(p)["feff_parameters"]]
        assert sid.endswith(own.id_suffix) and site_id(sid) == sid[: len(sid) - len(own.id_suffix)]
        # FEFF's charge only under the label of what that set's SCF computes
        for label in {"feff_charge_transfer", "feff_ground_charge_transfer"} - {own.charge_label}:
            assert np.isnan(project.labels[label][i]), (sid, label)
    assert {"family", "seed", "structure_params", "absorber_index"} <= set(prov)
    from xanes_agent.data.library import failure_set

    for name in used:  # a failure is never kept beside a spectrum of the same site and set
        ids = {site_id(i) for i, p in zip(project.ids.tolist(), project.provenance.tolist())
               if json.loads(p)["feff_parameters"] in PARAMETER_SETS[name].spectra_of}
        failed = {f["id"] for f in bundled_library.meta["failures"]
                  if failure_set(f, bundled_library.meta) in PARAMETER_SETS[name].spectra_of}
        assert not ids & failed, name
    assert all(f["reason"] for f in bundled_library.meta["failures"])


def test_table1_counts(bundled_library):
    rows = {tuple(line.split()[:2]): line.split() for line in table1(bundled_library).splitlines()[1:-1]}
    for (src, el), cols in rows.items():
        sub = bundled_library.where(source=src, element=el)
        assert int(cols[2]) == len(sub)
        assert int(cols[3]) == len(set(parent_groups(sub).tolist()))
        assert [int(c) for c in cols[4:7]] == [int(np.sum(sub.labels["coordination_number"] == k)) for k in (4, 5, 6)]
        assert int(cols[11]) == int(np.isfinite(sub.labels["feff_charge_transfer"]).sum())
    counted = sum(int(cols[12]) + int(cols[13]) for (src, _), cols in rows.items() if src == PROJECT_SOURCE)
    assert counted == len(bundled_library.meta["failures"])


def test_environments_count_each_class_by_oxidation_state(bundled_library):
    """`library info --environments`: per element and CN, spectra and parents, then per formal
    oxidation state; the states of a class add up to it."""
    import re

    project = bundled_library.where(source=PROJECT_SOURCE)
    groups = parent_groups(project)
    rows = environments(bundled_library).splitlines()[1:]
    assert len(rows) == 3 * len(set(project.element.tolist()))
    for row in rows:
        el, cn, n, n_par = row.split()[:4]
        m = (project.element == el) & (project.labels["coordination_number"] == int(cn))
        assert int(n) == m.sum() and int(n_par) == len(set(groups[m].tolist()))
        states = {float(q): (int(a), int(b)) for q, a, b in re.findall(r"([+-]\d+): (\d+)/(\d+)", row)}
        unknown = sum(int(u) for u in re.findall(r"unknown: (\d+)", row))
        assert sum(a for a, _ in states.values()) + unknown == int(n)
        for q, (a, b) in states.items():
            mq = m & (project.labels["oxidation_state"] == q)
            assert (a, b) == (mq.sum(), len(set(groups[mq].tolist())))


def test_a_build_without_the_feff_cache_resumes_from_the_committed_library(bundled_library, tmp_path):
    """A fresh machine has no FEFF cache: the build keeps the library's spectra and computes nothing."""
    from xanes_agent.data.feff import REDUCED_V2_PARAMETERS
    from xanes_agent.data.library import build_library, bundled_library_path

    out = tmp_path / "lib.npz"
    lib = build_library(out, per_element=3, elements=["Ti", "Cu"], workers=1, cache_dir=tmp_path / "cache",
                        include_omnixas=False, progress=False, resume_from=bundled_library_path(),
                        params=REDUCED_V2_PARAMETERS)
    assert not (tmp_path / "cache" / "feff").exists() or not any((tmp_path / "cache" / "feff").iterdir())
    # the sites' FSR spectra, and any of another set (RPA) the library holds for them, kept as they are
    assert len(lib) >= 6 and sorted(set(lib.element.tolist())) == ["Cu", "Ti"]
    assert sum(not sid.endswith("@rpa") for sid in lib.ids.tolist()) == 6
    project = bundled_library.where(source=PROJECT_SOURCE)
    index = {m: i for i, m in enumerate(project.ids.tolist())}
    for i, sid in enumerate(lib.ids.tolist()):
        j = index[sid]
        np.testing.assert_array_equal(lib.energy[i], project.energy[j])
        np.testing.assert_array_equal(lib.mu[i], project.mu[j])
        for k in lib.labels:
            np.testing.assert_array_equal(lib.labels[k][i], project.labels[k][j])
        assert lib.spectrum(i).provenance == project.spectrum(j).provenance


def test_a_build_with_a_new_parameter_set_keeps_the_earlier_sets_spectra(bundled_library, tmp_path):
    """A build with the RPA set from a library of FSR spectra keeps the planned sites' FSR spectra
    and left-out calculations as they are (nothing else of the earlier library); a site computed
    with both sets is two rows, each id with its set's suffix; a build with the FSR set again keeps
    the RPA row the same way."""
    import dataclasses
    import json

    from xanes_agent.data.feff import REDUCED_RPA_PARAMETERS, REDUCED_V2_PARAMETERS
    from xanes_agent.data.library import build_library, parameter_sets
    from xanes_agent.data.readers import write_library
    from xanes_agent.data.structures import generate

    gens = list(generate(["Ti"], 4))
    project = bundled_library.where(source=PROJECT_SOURCE)
    fsr = project[np.isin(project.ids, [g.id for g in gens[:3]])]
    assert len(fsr) == 3
    # one RPA row of the first site (its FSR spectrum under the RPA set's id and name: the build
    # judges rows by their records, not their physics) and an FSR failure of the fourth site
    twin = fsr[[0]]
    prov = json.loads(twin.provenance[0])
    twin = dataclasses.replace(twin, ids=np.array([f"{fsr.ids[0]}@rpa"]),
                               provenance=np.array([json.dumps({**prov, "feff_parameters": "reduced-v2-rpa"})]))
    failure = {"id": gens[3].id, "element": "Ti", "reason": "FEFF failed: FeffPipelineError: stage 'pot' failed"}
    prior = dataclasses.replace(type(fsr).concatenate([fsr, twin]),
                                meta={"feff_parameters": {"name": "reduced-v2"}, "failures": [failure]})
    write_library(prior, tmp_path / "prior.npz")
    kw = dict(per_element=4, elements=["Ti"], workers=1, cache_dir=tmp_path / "cache", include_omnixas=False,
              progress=False, cached_only=True)
    rpa = build_library(tmp_path / "rpa.npz", resume_from=tmp_path / "prior.npz", params=REDUCED_RPA_PARAMETERS, **kw)
    assert sorted(rpa.ids.tolist()) == sorted([*fsr.ids.tolist(), f"{fsr.ids[0]}@rpa"])
    for i, sid in enumerate(rpa.ids.tolist()):
        j = prior.index_of(sid)
        np.testing.assert_array_equal(rpa.mu[i], prior.mu[j])
        assert rpa.spectrum(i).provenance == prior.spectrum(j).provenance
    assert rpa.meta["feff_parameters"]["name"] == "reduced-v2-rpa"
    fsr_sets = {json.loads(p)["feff_parameters"] for p in fsr.provenance.tolist()}  # reduced-v1 or -v2
    assert set(rpa.meta["kept_feff_parameters"]) == fsr_sets | {"reduced-v2"}  # the failure's, too
    assert rpa.meta["failures"] == [{**failure, "feff_parameters": "reduced-v2"}]
    assert parameter_sets(rpa).startswith("reduced-v2-rpa (new sites) 1 spectra; kept: reduced-v")
    # and back: the FSR set's build keeps the RPA row and its own failure
    again = build_library(tmp_path / "fsr.npz", resume_from=tmp_path / "rpa.npz", params=REDUCED_V2_PARAMETERS, **kw)
    assert sorted(again.ids.tolist()) == sorted(rpa.ids.tolist())
    assert set(again.meta["kept_feff_parameters"]) == {"reduced-v2-rpa"}
    assert again.meta["failures"] == [{**failure, "feff_parameters": "reduced-v2"}]
    # a build of other sites keeps nothing of these
    other = build_library(tmp_path / "v.npz", resume_from=tmp_path / "rpa.npz", params=REDUCED_RPA_PARAMETERS,
                          **{**kw, "elements": ["V"], "per_element": 1})
    assert len(other) == 0 and other.meta["failures"] == []


def test_a_build_from_a_library_does_not_rerun_its_failures_that_stand(bundled_library, tmp_path):
    """An earlier library's left-out calculation whose outcome stands (FEFF's own stage error under
    the current retry policy, as a cached outcome would) is recorded as left out again, not run:
    without the FEFF cache a build retried every one (two thirds of a session's first calculations)."""
    import dataclasses

    from xanes_agent.data.feff import REDUCED_RPA_PARAMETERS, REDUCED_V2_PARAMETERS, RETRY_POLICY
    from xanes_agent.data.library import build_library
    from xanes_agent.data.readers import write_library
    from xanes_agent.data.structures import generate

    failed = next(iter(generate(["Ti"], 3))).id
    prior = bundled_library[bundled_library.ids != failed]
    reason = "FEFF failed: FeffPipelineError: stage 'pot' failed"
    # the record of a library that holds several sets names its set (the FSR one, as this build's)
    prior = dataclasses.replace(prior, meta={**prior.meta, "failures": [
        {"id": failed, "element": "Ti", "reason": reason, "retry_policy": RETRY_POLICY,
         "feff_parameters": REDUCED_V2_PARAMETERS.name}]})
    write_library(prior, tmp_path / "prior.npz")
    lib = build_library(tmp_path / "lib.npz", per_element=3, elements=["Ti"], workers=1,
                        cache_dir=tmp_path / "cache", include_omnixas=False, progress=False,
                        resume_from=tmp_path / "prior.npz", params=REDUCED_V2_PARAMETERS)
    assert not (tmp_path / "cache" / "feff").exists() or not any((tmp_path / "cache" / "feff").iterdir())
    fsr = [sid for sid in lib.ids.tolist() if not sid.endswith(REDUCED_RPA_PARAMETERS.id_suffix)]  # RPA rows: kept
    assert len(fsr) == 2 and failed not in lib.ids
    assert [(f["id"], f["reason"], f["retry_policy"]) for f in lib.meta["failures"]
            if f.get("feff_parameters") == REDUCED_V2_PARAMETERS.name] == [(failed, reason, RETRY_POLICY)]


def test_only_spectra_of_the_same_structure_and_parameters_are_reused(bundled_library):
    import json

    from xanes_agent.data.feff import PARAMETER_SETS, REDUCED_PARAMETERS, REDUCED_V2_PARAMETERS
    from xanes_agent.data.library import reusable_spectra
    from xanes_agent.data.structures import generate

    gens = list(generate(["Fe"], 4))
    ids = [g.id for g in gens]
    project = bundled_library.where(source=PROJECT_SOURCE)
    rows = project[np.isin(project.ids, ids)]
    assert len(rows) == 4
    assert sorted(reusable_spectra(rows, gens, REDUCED_PARAMETERS)) == sorted(ids)
    assert sorted(reusable_spectra(rows, gens, REDUCED_V2_PARAMETERS)) == sorted(ids)  # v2 keeps v1 spectra
    assert reusable_spectra(rows, gens, PARAMETER_SETS["mp-xanes"]) == {}
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
    from xanes_agent.data.feff import REDUCED_V2_PARAMETERS
    from xanes_agent.data.library import site_id

    spectra, failures = compute_project_spectra(["Mn"], 237, tmp_path, progress=False, cached_only=True,
                                                prior=bundled_library, params=REDUCED_V2_PARAMETERS)
    assert sorted(s.id for s in spectra) == sorted(i for i in mn.ids.tolist() if site_id(i) in ids)
    assert sorted(failures, key=lambda f: f["id"]) == sorted(failed, key=lambda f: f["id"])


@pytest.fixture(scope="module")
def small_hosts(omnixas_root, tmp_path_factory):
    """40 real host structures (links into the OmniXAS folder), enough for every CN class."""
    root = tmp_path_factory.mktemp("hosts")
    for mat in sorted(p for p in omnixas_root.iterdir() if p.is_dir())[:40]:
        (root / mat.name).mkdir()
        (root / mat.name / "POSCAR").symlink_to(mat / "POSCAR")
    return root


def test_host_plan_spreads_classes_and_parents_and_only_grows(small_hosts):
    from xanes_agent.data.hosts import MAX_PER_PARENT, all_sites, order_sites, plan

    sites = all_sites(("Fe", "Cr"), str(small_hosts))
    fe = order_sites(sites, "Fe")
    assert {s.cn_estimate for s in fe} == {4, 5, 6}
    assert {s.cn_estimate for s in fe[:3]} == {4, 5, 6}  # classes taken in turn
    first = [s.parent for s in fe if s.cn_estimate == 6]
    n_parents = len(set(first))
    assert len(set(first[:n_parents])) == n_parents  # every parent once before any twice
    assert max(first.count(p) for p in set(first)) <= MAX_PER_PARENT
    small, large = plan(["Fe", "Cr"], 5, small_hosts), plan(["Fe", "Cr"], 12, small_hosts)
    assert [s.id for s in small if s.element == "Fe"] == [s.id for s in large if s.element == "Fe"][:5]
    assert [s.element for s in small[:4]] == ["Fe", "Cr", "Fe", "Cr"]  # elements interleaved


def test_classes_short_of_spectra_run_first_and_the_plan_is_unchanged(small_hosts):
    """deficit_first reorders a real plan: sites of (element, CN) classes below the target run
    first, counting those queued ahead, each class in the plan's order and the nearly full class
    last; nothing is added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan
    from xanes_agent.data.structures import FAMILY_BY_NAME, generate

    pending = list(generate(["Fe"], 2)) + plan(["Fe", "Cr"], 12, small_hosts)
    assert all(f.family in FAMILY_BY_NAME for f in pending[:2])
    have = Counter({("Fe", 6): 150, ("Fe", 4): 149, ("Cr", 6): 10})  # Fe CN 5, Cr CN 4/5: none yet
    out = deficit_first(pending, have, target=150)
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)  # the same set
    short = [g for g in pending if getattr(g, "cn_estimate", None) is not None and (
        (g.element, g.cn_estimate) != ("Fe", 6))]
    fe4 = [g for g in short if (g.element, g.cn_estimate) == ("Fe", 4)]
    assert len(fe4) > 1  # one Fe CN 4 site fills the class: the next ones wait
    first = [g for g in short if g is not fe4[1] and g not in fe4[2:]]
    assert sorted(g.id for g in out[:len(first)]) == sorted(g.id for g in first)
    assert out[len(first) - 1].id == fe4[0].id  # 149 of 150: after the empty classes
    for key in {(g.element, g.cn_estimate) for g in first}:  # each class in the plan's order
        assert [g.id for g in out[:len(first)] if (g.element, g.cn_estimate) == key] == [
            g.id for g in first if (g.element, g.cn_estimate) == key]
    rest = out[len(first):]
    assert [g.id for g in rest] == [g.id for g in pending if g not in first]  # plan order kept
    assert deficit_first(pending, Counter(), target=0) == pending  # nothing short: the plan's order


def test_elements_short_of_spectra_run_first_the_emptiest_first(small_hosts):
    """With every class full, an element short of its total runs first, the emptiest element
    first, counting the sites queued ahead: the interleaved plan otherwise grew every element alike
    (session 28's end: Mn 953, Ni 845 of 1,000). Nothing added or dropped; without totals the order
    is the plan's."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    full = Counter({(g.element, g.cn_estimate): 500 for g in pending})
    fe, cr = [g for g in pending if g.element == "Fe"], [g for g in pending if g.element == "Cr"]
    assert len(fe) == len(cr) == 12
    out = deficit_first(pending, full, totals=Counter({"Fe": 990, "Cr": 500}), total_target=1000)
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)  # the same set
    # Cr (half full) before Fe; Fe's first 10 fill it to 1,000, its last 2 wait in the plan's order
    assert [g.id for g in out] == [g.id for g in cr + fe[:10] + fe[10:]]
    assert deficit_first(pending, full) == pending
    # a known success counts toward its element's total: Fe at 999 then needs no new site
    done = {fe[0].id: {"ok": True, "labels": {"coordination_number": float(fe[0].cn_estimate),
                                              "oxidation_state": 3.0}}}
    out = deficit_first(pending, full, totals=Counter({"Fe": 999, "Cr": 1000}), total_target=1000, known=done)
    assert [g.id for g in out] == [g.id for g in pending]  # the known one is first in the plan already


def test_sites_with_a_known_outcome_go_first_and_only_successes_fill_a_class(small_hosts):
    """A site whose FEFF outcome is already cached costs nothing: it goes first, and fills its
    class only if FEFF succeeded, under the CrystalNN label it came out with. Known failures took
    the places of short classes on every restart before (session 19: five-coordinate V and Cr)."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    cls = Counter((g.element, g.cn_estimate) for g in pending)
    key = max(cls, key=cls.get)  # the class with the most planned sites
    sites = [g for g in pending if (g.element, g.cn_estimate) == key]
    assert len(sites) >= 3
    have = Counter({k: 150 for k in cls})
    have[key] = 149  # one short
    failed = {sites[0].id: {"ok": False, "labels": {"coordination_number": float(key[1])}}}
    out = deficit_first(pending, have, target=150, known=failed)
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)  # the same set
    assert out[0].id == sites[0].id  # known: first
    assert out[1].id == sites[1].id  # the failure did not fill the class: the next site runs next
    assert sites[2].id not in [g.id for g in out[:2]]
    # a success fills its class (as labelled); the next site of the class waits in the plan's order
    done = {sites[0].id: {"ok": True, "labels": {"coordination_number": float(key[1]), "oxidation_state": 3.0}}}
    out = deficit_first(pending, have, target=150, known=done)
    assert out[0].id == sites[0].id
    assert [g.id for g in out[1:]] == [g.id for g in pending if g.id != sites[0].id]
    # without the outcomes the failure would take the one place (the old order)
    assert [g.id for g in deficit_first(pending, have, target=150)][:1] == [sites[0].id]
    assert sites[1].id != deficit_first(pending, have, target=150)[1].id


def _two_new_parents_first(out, pending, mine, old):
    """``out`` is ``pending`` reordered with the first sites of two parents of ``mine`` other than
    ``old`` (one site each) ahead of all, the rest in the plan's order."""
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)
    new = []
    for g in mine:
        if g.parent != old and g.parent not in {n.parent for n in new}:
            new.append(g)
    assert [g.id for g in out[:2]] == [g.id for g in new[:2]]
    assert [g.id for g in out[2:]] == [g.id for g in pending if g not in new[:2]]


def test_oxidation_states_short_of_parent_structures_run_sites_of_new_parents_first(small_hosts):
    """With every class full and every state full in spectra, a state short of distinct parent
    structures (a family's strained copies fill its spectra, not its parents) runs the sites of
    parents new to it first; nothing added or dropped, and without state parents the order stays."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    slices = Counter((g.element, g.cn_estimate, g.oxidation_state) for g in pending)
    key = max(slices, key=slices.get)
    mine = [g for g in pending if (g.element, g.cn_estimate, g.oxidation_state) == key]
    assert len({g.parent for g in mine}) >= 3
    full = Counter({(el, cn): 500 for el, cn, _ in slices})
    states = Counter({k: 100 for k in slices})  # spectra enough everywhere
    old = mine[0].parent  # a parent the state has already: its sites wait
    state_parents = {k: {f"other-{i}" for i in range(30)} for k in slices}
    state_parents[key] = {f"family:{i}" for i in range(27)} | {old}  # 28: two new parents fill it
    out = deficit_first(pending, full, states=states, state_parents=state_parents, state_parent_target=30)
    _two_new_parents_first(out, pending, mine, old)
    assert deficit_first(pending, full, states=states) == pending  # without state parents: spectra decide


def test_classes_short_of_parent_structures_run_sites_of_new_parents_first(small_hosts):
    """With every class full in spectra, a class short of distinct parent structures runs the
    sites of parents new to it first (counting those queued ahead), not those of parents it has;
    nothing added or dropped, and without parent counts the order is the spectra rule's alone."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    cls = Counter((g.element, g.cn_estimate) for g in pending)
    key = max(cls, key=cls.get)  # the class with the most planned sites
    mine = [g for g in pending if (g.element, g.cn_estimate) == key]
    by_parent = Counter(g.parent for g in mine)
    assert len(by_parent) >= 3
    full = Counter({k: 500 for k in cls})
    old = mine[0].parent  # a parent the class already has: its sites wait
    parents = {k: {f"other-{i}" for i in range(150)} for k in cls}
    parents[key] = {f"other-{i}" for i in range(147)} | {old}  # 148: two new parents fill it
    out = deficit_first(pending, full, parents=parents, parent_target=150)
    _two_new_parents_first(out, pending, mine, old)
    assert deficit_first(pending, full) == pending  # no parent counts: spectra alone decide


def test_the_class_furthest_from_its_target_runs_first(small_hosts):
    """Two classes short of parent structures: the one at half its target runs alone until it
    has caught up with the other, then the two take turns (the plan's order among equals), so the
    emptiest class does not wait its element's turn in the plan's interleaving."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    cls = Counter((g.element, g.cn_estimate) for g in pending)
    full = Counter({k: 500 for k in cls})
    new_parents = {k: len({g.parent for g in pending if (g.element, g.cn_estimate) == k}) for k in cls}
    order = {k: next(i for i, g in enumerate(pending) if (g.element, g.cn_estimate) == k) for k in cls}
    high, low = sorted((k for k in cls if new_parents[k] >= 3), key=order.get)[:2]  # low: later in the plan
    parents = {k: {f"other-{i}" for i in range(150)} for k in cls}
    parents[low] = {f"other-{i}" for i in range(8)}  # 8 of 10: far behind
    parents[high] = {f"other-{i}" for i in range(9)}  # 9 of 10: one parent short
    out = deficit_first(pending, full, parents=parents, parent_target=10)
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)
    head = [(g.element, g.cn_estimate) for g in out[:3]]
    assert head[0] == low  # 8/10 before 9/10
    assert sorted(head[1:]) == sorted([low, high])  # both at 9/10: the plan's order decides
    first_of = {k: next(g for g in pending if (g.element, g.cn_estimate) == k) for k in (low, high)}
    assert out[0].id == first_of[low].id and first_of[high].id in [g.id for g in out[1:3]]
    assert out[3].id == next(g for g in pending if g.id not in {x.id for x in out[:3]}).id  # the rest: plan order


def test_oxidation_states_short_of_spectra_run_first(small_hosts):
    """With every class full, the sites of an (element, CN, oxidation state) short of the state
    target run first, counting those queued ahead; a full state waits; nothing added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first, plan

    pending = plan(["Fe", "Cr"], 12, small_hosts)
    slices = Counter((g.element, g.cn_estimate, g.oxidation_state) for g in pending)
    short, _ = slices.most_common(1)[0]  # the slice with the most planned sites: some must wait
    assert slices[short] >= 3
    full = Counter({(el, cn): 150 for el, cn, _ in slices})
    states = Counter({k: 30 for k in slices})
    states[short] = 28  # two more fill it
    out = deficit_first(pending, full, states=states, state_target=30)
    assert sorted(g.id for g in out) == sorted(g.id for g in pending)
    mine = [g for g in pending if (g.element, g.cn_estimate, g.oxidation_state) == short]
    assert [g.id for g in out[:2]] == [g.id for g in mine[:2]]
    assert [g.id for g in out[2:]] == [g.id for g in pending if g not in mine[:2]]
    assert deficit_first(pending, full) == pending  # no state counts given: classes alone decide


def _assert_runs_first_until_target(plan, site, counts_kw, target_kw, target, short, at_target):
    """With every class and state of ``plan`` (one element's sites) full, ``site`` runs first while
    its count (``deficit_first``'s ``counts_kw``, ``short``) is below ``target``; at the target
    (``at_target``) or with no such counts the plan keeps its order; nothing added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import deficit_first

    el = site.element
    full = Counter({(el, cn): 150 for cn in (4, 5, 6)})
    states = Counter({(el, h.cn_estimate, h.oxidation_state): 30 for h in plan})
    out = deficit_first(plan, full, states=states, **{counts_kw: short, target_kw: target})
    assert sorted(h.id for h in out) == sorted(h.id for h in plan)
    assert out[0] is site and plan.index(site) > 0  # moved ahead of the plan
    assert [h.id for h in out[1:]] == [h.id for h in plan if h is not site]
    assert deficit_first(plan, full, states=states, **{counts_kw: at_target, target_kw: target}) == plan
    assert deficit_first(plan, full, states=states) == plan  # no such counts given: as before


def test_jahn_teller_elongated_octahedra_run_first(small_hosts):
    """Cu2+ in elongated octahedra (which the planning shell counts four- or five-coordinate) are
    found in real hosts, their elongation is that of the structure FEFF runs on (after the shell's
    rescaling), and with every class and state full they run first until the element has its
    target; nothing added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import ELONGATED_BAND, all_sites, elongation, order_sites

    cu = order_sites(all_sites(("Cu",), str(small_hosts)), "Cu")
    long_ = [g for g in cu if g.jahn_teller_elongated]
    assert long_ and {g.cn_estimate for g in long_} <= {4, 5}  # mp-10335's Cu2+ among the 40
    assert all(ELONGATED_BAND[0] < g.elongation <= ELONGATED_BAND[1] and g.oxidation_state == 2 for g in long_)
    for g in [next(g for g in cu if not g.native and abs(g.target_distance / g.host_distance - 1) > 0.03),
              long_[0]]:
        m = g.materialize()
        d = [n.nn_distance for n in m.structure.get_neighbors(m.structure[m.absorber_index], 3.2)
             if n.specie.symbol == "O"]
        assert elongation(d) == pytest.approx(g.elongation, abs=1e-6)
    _assert_runs_first_until_target(cu, long_[0], "elongated", "elongated_target", 150,
                                    Counter({"Cu": 149}), Counter({"Cu": 150}))
    assert elongation([2.0] * 5) is None and elongation([1.95] * 4 + [2.4, 2.4, 3.0]) == pytest.approx(2.4 / 1.95)


def test_tetrahedral_sites_run_first_until_their_state_has_its_target(small_hosts):
    """Four-coordinate sites are told apart as tetrahedra or square planes by the planning shell's
    largest O-M-O angle (the computed structure keeps it: the shell moves along its bonds), and
    with every class and state full a tetrahedral site of an (element, state) short of its target
    runs first; nothing added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import (
        TETRAHEDRAL_MAX_ANGLE,
        all_sites,
        first_shell,
        largest_shell_angle,
        order_sites,
    )

    co = order_sites(all_sites(("Co",), str(small_hosts)), "Co")
    four = [g for g in co if g.cn_estimate == 4]
    tet = [g for g in four if g.tetrahedral]
    assert tet and len(tet) < len(four)  # both geometries among the 40 hosts
    assert all(g.shell_angle < TETRAHEDRAL_MAX_ANGLE for g in tet)
    assert max(g.shell_angle for g in four) > 150  # a square plane's trans pair
    assert not any(g.tetrahedral for g in co if g.cn_estimate != 4)
    g = next(g for g in tet if not g.native and abs(g.target_distance / g.host_distance - 1) > 0.03)
    m = g.materialize()
    shell = first_shell(m.structure, m.absorber_index)
    assert largest_shell_angle(m.structure, m.absorber_index, shell) == pytest.approx(g.shell_angle, abs=0.01)
    _assert_runs_first_until_target(co, tet[0], "tetrahedra", "tetrahedral_target", 60,
                                    Counter({("Co", tet[0].oxidation_state): 59}),
                                    Counter({("Co", h.oxidation_state): 60 for h in tet}))


def test_tetrahedral_network_sites_run_first_until_their_state_has_its_target():
    """A tetrahedral site sharing corners with six or more other tetrahedra (wurtzite-derived LiCuPO4
    and Li2CuSiO4, every cation tetrahedral) is told apart, counted on the parent (the computed
    structure keeps its neighbours), and with every class and state full it runs first while its
    (element, state) is short of its target; a library's spectra count toward it by their own labels."""
    from collections import Counter

    from xanes_agent.data.collection import Spectrum
    from xanes_agent.data.hosts import NETWORK_MIN, all_sites, order_sites, tetrahedral_neighbours
    from xanes_agent.data.library import library_counts

    root = Path(__file__).resolve().parent / "fixtures" / "network_hosts"
    co = order_sites(all_sites(("Co",), str(root)), "Co")
    network = [g for g in co if g.tetrahedral_network]
    assert network == [g for g in co if g.tetrahedral]  # every cation of these hosts is tetrahedral
    assert all(g.tetrahedral_neighbours >= NETWORK_MIN for g in network)
    g = next(g for g in network if g.oxidation_state == 2 and g.host_species == "Cu")
    m = g.materialize()
    assert m.structure[m.absorber_index].specie.symbol == "Co"
    assert tetrahedral_neighbours(m.structure, m.absorber_index) == g.tetrahedral_neighbours == 10
    at_target = Counter({("Co", h.oxidation_state): 60 for h in network})
    short = at_target + Counter()
    short["Co", 2] = 59
    _assert_runs_first_until_target(co, g, "networks", "network_target", 60, short, at_target)
    e = np.linspace(7700, 7780, 50)
    spectra = [Spectrum(energy=e, mu=np.ones_like(e), element="Co", id=g.id, labels=labels,
                        provenance={"material_id": g.parent, "parent": g.parent})
               for labels in ({"coordination_number": 4.0, "oxidation_state": 2.0},
                              {"coordination_number": 5.0, "oxidation_state": 2.0})]  # CrystalNN's CN rules
    assert library_counts(spectra, co)["networks"] == {("Co", 2): 1}


def test_perovskite_like_pyramids_and_octahedra_run_first_until_their_state_has_its_target(small_hosts):
    """A five- or six-coordinate site with at least four large A-site cations within 3.8 Angstrom (a
    layered perovskite's square pyramid, a perovskite's B-site octahedron) is told apart from the
    hosts' other pyramids and octahedra, counted on the parent (the substituted absorber keeps its
    neighbours), and with every class and state full it runs first while its (element,
    coordination, state) is short of its target; nothing added or dropped."""
    from collections import Counter

    from xanes_agent.data.hosts import (
        A_SITE_CATIONS,
        A_SITE_MIN,
        a_site_neighbours,
        all_sites,
        order_sites,
    )

    mn = order_sites(all_sites(("Mn",), str(small_hosts)), "Mn")
    assert not any(g.a_site_shell for g in mn if g.cn_estimate not in (5, 6))
    for cn in (5, 6):
        of_cn = [g for g in mn if g.cn_estimate == cn]
        shells = [g for g in of_cn if g.a_site_shell]
        assert shells and len(shells) < len(of_cn)  # both kinds among the 40 hosts
        g = shells[0]
        m = g.materialize()
        around = {n.specie.symbol for n in m.structure.get_neighbors(m.structure[m.absorber_index], 3.8)}
        assert a_site_neighbours(m.structure, m.absorber_index) == g.a_site_neighbours >= A_SITE_MIN
        assert around & A_SITE_CATIONS and m.structure[m.absorber_index].specie.symbol == "Mn"
        at_target = Counter({("Mn", h.cn_estimate, h.oxidation_state): 30 for h in mn if h.a_site_shell})
        short = at_target + Counter()
        short["Mn", cn, g.oxidation_state] = 29
        _assert_runs_first_until_target(mn, g, "a_site_shells", "a_site_target", 30, short, at_target)


def test_the_build_counts_a_sites_spectra_of_every_set_by_the_sites_geometry(small_hosts):
    """What the build's order counts in a library's spectra: labels from the spectra themselves,
    geometry (tetrahedron, elongated octahedron) from the planned site, an RPA spectrum (id@rpa)
    counted as its site's."""
    from xanes_agent.data.collection import Spectrum
    from xanes_agent.data.feff import REDUCED_RPA_PARAMETERS
    from xanes_agent.data.hosts import all_sites, order_sites
    from xanes_agent.data.library import library_counts

    plan_ = order_sites(all_sites(("Cu",), str(small_hosts)), "Cu")
    tet = next(g for g in plan_ if g.tetrahedral)
    long_ = next(g for g in plan_ if g.jahn_teller_elongated)
    pyr = next(g for g in plan_ if g.a_site_shell and g.cn_estimate == 5)
    e = np.linspace(8970, 9050, 50)

    def spectrum(g, suffix, cn, q):
        return Spectrum(energy=e, mu=np.ones_like(e), element="Cu", edge="K", id=g.id + suffix,
                        labels={"coordination_number": cn, "oxidation_state": q},
                        provenance={"material_id": g.parent, "parent": g.parent})

    rpa = REDUCED_RPA_PARAMETERS.id_suffix
    spectra = [spectrum(tet, "", 4.0, 2.0), spectrum(tet, rpa, 4.0, 2.0), spectrum(long_, rpa, 6.0, 2.0),
               spectrum(tet, "", 5.0, 1.0),  # CrystalNN may say 5 on the computed structure: not a tetrahedron
               spectrum(pyr, rpa, 5.0, 3.0), spectrum(pyr, "", 6.0, 3.0),  # CrystalNN's CN, the site's shell
               spectrum(tet, "", 6.0, 3.0)]  # a six without large cations around is not counted
    c = library_counts(spectra, plan_)
    assert c["a_site_shells"] == {("Cu", 5, 3): 1, ("Cu", 6, 3): 1}
    assert c["tetrahedra"] == {("Cu", 2): 2}
    assert c["elongated"] == {"Cu": 1}
    assert c["have"] == {("Cu", 4): 2, ("Cu", 6): 3, ("Cu", 5): 2} and c["totals"] == {"Cu": 7}
    assert c["states"][("Cu", 5, 1)] == 1 and c["parents"][("Cu", 4)] == {tet.parent}


def test_substituted_site_is_dilute_isovalent_and_rescaled(small_hosts):
    from xanes_agent.data.hosts import MIN_CELL_LENGTH, all_sites, first_shell
    from xanes_agent.data.readers import read_poscar

    sub = next(s for s in all_sites(("Fe", "Cr"), str(small_hosts))
               if not s.native and not s.charge_change and abs(s.target_distance / s.host_distance - 1) > 0.03)
    g = sub.materialize()
    s = g.structure
    assert min(s.lattice.abc) >= MIN_CELL_LENGTH
    assert s[g.absorber_index].specie.symbol == sub.element
    host = read_poscar(sub.poscar)
    assert sum(site.specie.symbol == sub.element for site in s) == sum(
        site.specie.symbol == sub.element for site in host) * (len(s) // len(host)) + 1
    shell = first_shell(s, g.absorber_index)
    assert len(shell) == sub.cn_estimate
    assert np.mean([n.nn_distance for n in shell]) == pytest.approx(sub.target_distance, abs=1e-6)
    assert g.oxidation_state == sub.oxidation_state  # isovalent: the cell stays charge balanced


def test_aliovalent_sites_only_where_isovalent_ones_are_scarce(small_hosts):
    """In 40 hosts, Fe and Cr octahedra are plenty (no aliovalent ones); four- and five-coordinate
    Fe sites are few, and there Fe also goes where only a state one above or below the host's
    fits, labelled with that state."""
    from collections import Counter

    from xanes_agent.data.hosts import MIN_ISOVALENT, SCALE_RANGE, _tabulated, all_sites, estimated_radius, first_shell
    from xanes_agent.data.structures import O_RADIUS

    sites = all_sites(("Fe", "Cr"), str(small_hosts))
    iso = Counter((s.element, s.cn_estimate) for s in sites if not s.charge_change)
    # a site's first candidate (second states, the trivalent absorber beside it, are tested below)
    alio = [s for s in sites if s.charge_change and not s.second_state]
    assert alio and {s.charge_change for s in alio} <= {-1, 1}
    assert iso["Fe", 6] >= MIN_ISOVALENT and iso["Cr", 6] >= MIN_ISOVALENT
    assert all(iso[s.element, s.cn_estimate] < MIN_ISOVALENT for s in alio)
    assert len({s.id for s in sites}) == len(sites)
    # an isovalent site's params (its cache key) are what they were before aliovalent sites existed
    assert all("charge_change" not in s.params for s in sites if not s.charge_change)
    for s in alio:
        assert not s.native and s.family == "mp-aliovalent" and s.id.endswith(f"sub{s.charge_change:+d}")
        r = (estimated_radius if s.estimated_radius else _tabulated)(s.element, s.oxidation_state, s.cn_estimate)
        assert s.target_distance == pytest.approx(r + O_RADIUS)
        assert SCALE_RANGE[0] <= s.target_distance / s.host_distance <= SCALE_RANGE[1]
        r_host = _tabulated(s.element, s.oxidation_state - s.charge_change, s.cn_estimate)  # did not fit
        assert r_host is None or not SCALE_RANGE[0] <= (r_host + O_RADIUS) / s.host_distance <= SCALE_RANGE[1]
    g = alio[0].materialize()
    assert g.oxidation_state == alio[0].oxidation_state and g.family == "mp-aliovalent"
    shell = first_shell(g.structure, g.absorber_index)
    assert np.mean([n.nn_distance for n in shell]) == pytest.approx(alio[0].target_distance, abs=1e-6)


def test_five_coordinate_trivalent_sites_from_an_estimated_radius(small_hosts, monkeypatch):
    """Shannon lists Ti3+, V3+ and Cr3+ six-coordinate only, so five-coordinate M3+ came from one
    prototype family; their five-coordinate radius is estimated as r(VI) times the mean r(V)/r(VI)
    of the 3d ions Shannon lists both ways. Those candidates come after every candidate of a
    tabulated radius in their class: the plan's other sites, their order within each class and
    their cache keys stay as they were."""
    from xanes_agent.data import hosts
    from xanes_agent.data.hosts import estimated_radius, five_from_six, order_sites, shannon_radius
    from xanes_agent.data.structures import O_RADIUS

    ratio = five_from_six()
    assert 0.85 < ratio < 0.95
    assert ratio == pytest.approx(np.mean([shannon_radius(el, q, "V") / shannon_radius(el, q, "VI") for el, q in (
        ("Ti", 4), ("V", 4), ("V", 5), ("Mn", 2), ("Mn", 3), ("Fe", 3), ("Co", 2), ("Ni", 2), ("Cu", 2))]))
    assert estimated_radius("Ti", 3, 5) == pytest.approx(ratio * 0.67)
    assert estimated_radius("Cr", 3, 5) == pytest.approx(ratio * 0.615)
    # listed five-coordinate (or IV and VI to interpolate), divalent, or another coordination: none
    for args in (("Ti", 4, 5), ("Fe", 3, 5), ("Fe", 2, 5), ("Ti", 2, 5), ("V", 2, 5), ("Ti", 3, 6), ("Ti", 3, 4)):
        assert estimated_radius(*args) is None, args
    sites = hosts.all_sites(("Cr", "Fe"), str(small_hosts))
    est = [s for s in sites if s.estimated_radius]
    assert est and {(s.element, s.cn_estimate, s.oxidation_state) for s in est} == {("Cr", 5, 3)}
    for s in est:
        assert s.target_distance == pytest.approx(estimated_radius("Cr", 3, 5) + O_RADIUS)
        assert s.params["radius"].startswith("estimated")
    assert not any("radius" in s.params for s in sites if not s.estimated_radius)
    assert len({s.id for s in sites}) == len(sites)
    new = order_sites(sites, "Cr")
    five = [s for s in new if s.cn_estimate == 5]
    assert [s.estimated_radius for s in five] == sorted(s.estimated_radius for s in five)  # estimated last
    # without the estimate: the same sites, in the same order within each class
    hosts.all_sites.cache_clear()
    monkeypatch.setattr(hosts, "estimated_radius", lambda *a: None)
    old = order_sites(hosts.all_sites(("Cr", "Fe"), str(small_hosts)), "Cr")
    hosts.all_sites.cache_clear()
    for cn in (4, 5, 6):
        assert [s.id for s in old if s.cn_estimate == cn] == [
            s.id for s in new if s.cn_estimate == cn and not s.estimated_radius]
    assert {s.id: s.params for s in old}.items() <= {s.id: s.params for s in new}.items()


def test_five_coordinate_sites_also_get_the_trivalent_absorber_as_a_second_state(small_hosts):
    """Co3+, Ni3+ and Cu3+ are five-coordinate in one prototype family only, Mn3+ and Fe3+ in it
    and a dozen hosts: a five-coordinate host site whose first candidate is another state (Co2+ or
    Fe2+ on a Cu2+ pyramid) also gets the trivalent absorber, from its estimated radius (Co) or
    Shannon's (Fe). These come after every other candidate of their class, so the plan's other
    sites keep their order within each class and their cache keys."""
    from xanes_agent.data.hosts import MAX_PER_PARENT, all_sites, estimated_radius, order_sites
    from xanes_agent.data.structures import O_RADIUS, shannon_radius

    sites = all_sites(("Co", "Fe"), str(small_hosts))
    second = [s for s in sites if s.second_state]
    assert {(s.element, s.cn_estimate, s.oxidation_state) for s in second} == {("Co", 5, 3), ("Fe", 5, 3)}
    assert len({s.id for s in sites}) == len(sites)
    first = {(s.parent, s.site, s.element): s for s in sites if not s.second_state}
    for s in second:
        if s.element == "Co":
            assert s.estimated_radius and s.params["radius"].startswith("estimated")
            assert s.target_distance == pytest.approx(estimated_radius("Co", 3, 5) + O_RADIUS)
        else:  # Shannon lists Fe3+ five-coordinate: its params are those of any tabulated site
            assert not s.estimated_radius and "radius" not in s.params
            assert s.target_distance == pytest.approx(shannon_radius("Fe", 3, "V") + O_RADIUS)
        other = first[s.parent, s.site, s.element]  # the site's first candidate: another state
        assert other.oxidation_state != 3
        assert s.oxidation_state - s.charge_change == other.oxidation_state - other.charge_change  # same host state
    g = second[0].materialize()
    assert g.oxidation_state == 3 and g.params == second[0].params
    for el in ("Co", "Fe"):
        plan = order_sites(sites, el)
        five = [s for s in plan if s.cn_estimate == 5]
        assert [s.second_state for s in five] == sorted(s.second_state for s in five)  # second states last
        assert all(sum(t.parent == p for t in five if t.second_state) <= MAX_PER_PARENT
                   for p in {t.parent for t in five})
        without = order_sites([s for s in sites if not s.second_state], el)
        for cn in (4, 5, 6):
            assert [s.id for s in without if s.cn_estimate == cn] == [
                s.id for s in plan if s.cn_estimate == cn and not s.second_state]


def test_host_site_build_runs_feff_then_assembles_from_the_cache(small_hosts, tmp_path):
    """One real FEFF10 run of a planned host site; a cache-only pass gives the same spectrum and
    labels from the job record, without building the structure again; an outcome that does not
    stand is run again."""
    from xanes_agent.data.feff import REDUCED_V2_PARAMETERS
    from xanes_agent.data.library import compute_project_spectra

    # the FSR set: this site's RPA spectrum starts above its edge (FEFF's ground-state Fermi level
    # lies above the screened core hole's onset there) and is rejected
    kw = dict(progress=False, hosts_per_element=1, hosts_root=small_hosts, params=REDUCED_V2_PARAMETERS)
    spectra, failures = compute_project_spectra(["Fe"], 0, tmp_path / "feff", workers=1, **kw)
    assert len(spectra) + len(failures) == 1
    again, _ = compute_project_spectra(["Fe"], 0, tmp_path / "feff", cached_only=True, **kw)
    assert spectra, failures
    sp = spectra[0]
    assert sp.provenance["parent"] and sp.provenance["family"].startswith("mp-")
    assert sp.labels["coordination_number"] in (4.0, 5.0, 6.0)
    np.testing.assert_array_equal(again[0].mu, sp.mu)
    assert again[0].labels == pytest.approx(sp.labels, nan_ok=True)

    # an outcome cached from an error outside FEFF before FEFF wrote a spectrum is left out of
    # snapshots until a build computes it again
    import json

    (job,) = (tmp_path / "jobs").glob("*/*.json")
    entry = tmp_path / "feff" / json.loads(job.read_text())["key"]
    record = json.loads((entry / "result.json").read_text())
    record.update(ok=False, reason="FEFF failed: ModuleNotFoundError: No module named 'xanes_agent.x'")
    (entry / "result.json").write_text(json.dumps(record))
    (entry / "xmu.dat").unlink()
    stale, failed = compute_project_spectra(["Fe"], 0, tmp_path / "feff", cached_only=True, **kw)
    assert not stale and "ModuleNotFoundError" in failed[0]["reason"]
    rerun, _ = compute_project_spectra(["Fe"], 0, tmp_path / "feff", workers=1, **kw)
    np.testing.assert_allclose(rerun[0].mu, sp.mu, rtol=1e-6)
    assert json.loads((entry / "result.json").read_text())["ok"]
