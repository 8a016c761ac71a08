"""Building, splitting and describing the project's reference library.

``xanes-agent build-library`` runs :func:`build_library`: it generates the oxide structures
(:mod:`.structures`), runs FEFF10 on each absorber site in parallel with a resumable cache
(:mod:`.feff`), labels every site from its structure (:mod:`.labels`), adds the OmniXAS Cu set as
its own source, assigns the fixed held-out split and writes the versioned ``.npz`` file.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.edges import ELEMENTS
from .collection import LABEL_NAMES, Spectrum, SpectrumCollection
from .feff import (
    LIBRARY_PARAMETERS,
    PARAMETER_SETS,
    FeffParameters,
    check_spectrum,
    feff_input,
    outcome_stands,
    run_feff,
)
from .readers import read_library, write_library

log = logging.getLogger(__name__)

PROJECT_SOURCE = "feff10-project"
TEST_FRACTION = 0.10
BV_MAX_SITES = 30
#: Key of ``lib.meta`` holding parent -> structure type (:func:`annotate_structure_types`).
STRUCTURE_TYPES_KEY = "structure_types"


def bundled_library_path() -> Path:
    """The library committed inside the package."""
    return Path(__file__).with_name("reference") / "library.npz"


def load_bundled_library() -> SpectrumCollection:
    """Read the bundled reference library (FEFF10 project spectra + OmniXAS Cu)."""
    return read_library(bundled_library_path())


def failure_set(failure: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """The FEFF parameter set a library's left-out calculation was run with: its own record, or,
    for records written before a library held several sets (session 37), the library's set."""
    return failure.get("feff_parameters") or (meta.get("feff_parameters") or {}).get("name")


def spectrum_set(provenance: str | dict[str, Any]) -> str | None:
    """The FEFF parameter set a project spectrum was computed with (its provenance record)."""
    prov = json.loads(provenance) if isinstance(provenance, str) else provenance
    return prov.get("feff_parameters") if isinstance(prov, dict) else None


def site_id(spectrum_id: str) -> str:
    """The library site a project spectrum id names: the id without its parameter set's suffix
    (:attr:`~.feff.FeffParameters.id_suffix`, e.g. ``Cu-spinel-3@rpa`` -> ``Cu-spinel-3``)."""
    for p in PARAMETER_SETS.values():
        if p.id_suffix and spectrum_id.endswith(p.id_suffix):
            return spectrum_id[: -len(p.id_suffix)]
    return spectrum_id


def kept_from_other_sets(prior: SpectrumCollection, params: FeffParameters, sites: set[str]
                         ) -> tuple[SpectrumCollection, list[dict[str, Any]]]:
    """The project spectra (and left-out calculations) of ``prior`` at the planned ``sites`` that
    were computed with parameter sets other than ``params`` and those it reproduces: a build with a
    new set keeps them as they are (session 37: the library's FSR spectra stay beside the RPA ones
    that grow build by build, and the models train on both), never computing them again."""
    project = prior.where(source=PROJECT_SOURCE) if len(prior) else prior
    other = np.array([spectrum_set(p) not in params.spectra_of and site_id(i) in sites
                      for i, p in zip(project.ids.tolist(), project.provenance.tolist())], dtype=bool)
    failures = [f for f in prior.meta.get("failures", [])
                if failure_set(f, prior.meta) not in params.spectra_of and f.get("id") in sites]
    # each with the set it came from, now that the library's own set is another
    return project[other], [{**f, "feff_parameters": failure_set(f, prior.meta)} for f in failures]


def parameter_sets(lib: SpectrumCollection) -> str:
    """The library's FEFF parameter sets for people: the build's, then the ones kept from earlier
    builds, each with its project spectra, e.g. ``reduced-v2-rpa (new sites) 212 spectra; kept:
    reduced-v2 5,871, reduced-v1 2,838``."""
    project = lib.where(source=PROJECT_SOURCE)
    counts = Counter(spectrum_set(p) for p in project.provenance.tolist())
    own = PARAMETER_SETS.get((lib.meta.get("feff_parameters") or {}).get("name", ""))
    mine = set(own.spectra_of) if own is not None else set()
    name = own.name if own is not None else "?"
    text = f"{name} (new sites) {sum(n for s, n in counts.items() if s in mine):,} spectra"
    others = sorted(((s, n) for s, n in counts.items() if s not in mine), key=lambda x: -x[1])
    return text + (f"; kept: {', '.join(f'{s} {n:,}' for s, n in others)}" if others else "")


def split_for(material_id: str, fraction: float = TEST_FRACTION) -> str:
    """``"test"`` for a fixed ~10 % of materials (by a hash of the id), else ``"train"``.

    Hashing the material id (not the spectrum) keeps every site of one material on the same side,
    and never changes as the library grows.
    """
    h = int(hashlib.sha256(material_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < fraction else "train"


# -- workers (module level so that the process pool can pickle them) ------------------------------

def _job_record_path(cache_dir: str, params: FeffParameters, gid: str) -> Path:
    return Path(cache_dir).parent / "jobs" / params.name / f"{gid.replace('/', '_')}.json"


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a job record atomically (a snapshot may read it while the build runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def _project_job(gen: Any, params: FeffParameters, cache_dir: str, cached_only: bool = False) -> dict[str, Any]:
    """One library site: build its structure, run FEFF (or read the cache), label it.

    ``gen`` is a :class:`~.structures.GeneratedStructure` or a :class:`~.hosts.HostSite` (built here,
    in the worker). A host site records its outcome under ``<cache>/jobs/<id>.json`` so that
    ``cached_only`` assembles it without rebuilding the structure; one whose CrystalNN
    coordination is outside 4-6 is skipped before FEFF runs.
    """
    from .feff import INTERNAL_ERROR, _load_cached, cached_record, cached_result
    from .labels import site_environment

    job = gen  # what the provenance records: for a host site, its index in the parent's POSCAR
    host = hasattr(job, "materialize")
    record_path = _job_record_path(cache_dir, params, job.id)
    if host:
        try:
            rec = json.loads(record_path.read_text()) if record_path.exists() else None
        except (OSError, ValueError):  # being written by a running build: not done yet
            rec = None
        if rec is not None:
            if rec.get("skipped"):
                return rec
            record = cached_record(cache_dir, rec["key"])
            spectrum = (Path(cache_dir) / rec["key"] / "xmu.dat").exists()
            if record is not None and (cached_only or outcome_stands(record, spectrum)):
                res = _load_cached(Path(cache_dir) / rec["key"], rec["key"], record)
                return {**rec, "ok": res.ok, "reason": res.reason, "energy": res.energy, "mu": res.mu,
                        "retry_policy": res.retry_policy}
            # FEFF's outcome is missing or does not stand (an error outside FEFF): computed again
        if cached_only:
            return {"id": job.id, "ok": False, "reason": "not computed yet", "seconds": 0.0, "pending": True}
        try:
            gen = job.materialize()
            env = site_environment(gen.structure, gen.absorber_index)
            reason = ("" if env["coordination_number"] in (4.0, 5.0, 6.0) else
                      f"skipped: CrystalNN coordination {env['coordination_number']:g} is outside 4-6")
        except Exception as exc:  # noqa: BLE001 - one odd host structure must not end a build
            reason = f"skipped: structure not built: {type(exc).__name__}: {exc}"[:300]
        if reason:
            rec = {"id": job.id, "ok": False, "skipped": True, "seconds": 0.0, "reason": reason}
            _write_record(record_path, rec)
            return rec
    else:
        env = site_environment(gen.structure, gen.absorber_index)
    provenance = {"family": job.family, "seed": job.seed, "absorber_index": job.absorber_index,
                  "structure_params": job.params, **gen.details,
                  "formula": gen.structure.composition.reduced_formula}
    inp = feff_input(gen.structure, gen.absorber_index, params, title=job.id)
    res = cached_result(inp, cache_dir) if cached_only else run_feff(inp, cache_dir, meta={"id": job.id})
    if res is None:
        return {"id": job.id, "ok": False, "reason": "not computed yet", "seconds": 0.0, "pending": True}
    labels = {**env, "oxidation_state": float(gen.oxidation_state), params.charge_label: res.charge_transfer}
    out: dict[str, Any] = {"id": job.id, "ok": res.ok, "reason": res.reason, "seconds": res.seconds,
                           "scf_mixing_fallback": res.scf_mixing_fallback, "labels": labels,
                           "provenance": provenance, "key": res.key, "retry_policy": res.retry_policy}
    if host and not res.reason.startswith(INTERNAL_ERROR):  # an error outside FEFF: not recorded
        _write_record(record_path, out)
    if res.ok:
        out.update(energy=res.energy, mu=res.mu)
    return out


def _omnixas_labels(entry: Any) -> dict[str, Any]:
    from .labels import site_labels
    from .readers import read_poscar

    s = read_poscar(entry.poscar)
    # BVAnalyzer's cost explodes with cell size (~10 s at 144 sites): above BV_MAX_SITES the
    # oxidation state is left unknown (NaN) rather than stalling the build for hours
    labels = site_labels(s, entry.site, oxidation_state=None if len(s) <= BV_MAX_SITES else float("nan"))
    anions = sorted({el.symbol for el in s.composition.elements if el.X > 2.5 and el.symbol != "C"})
    return {"labels": labels, "formula": s.composition.reduced_formula, "anions": anions, "nsites": len(s)}


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool that, on an exception (Ctrl-C included), drops what is queued and kills its
    workers and their FEFF runs instead of waiting for every queued job: the workers lead their
    own process groups (:func:`_die_with_parent`), so the terminal's Ctrl-C reaches this process
    only. What finished is in the caches for the next build."""
    before = set(multiprocessing.active_children())
    # spawn: FEFF10's native pipeline and forked interpreter state do not mix well
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - before:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.kill()
        raise
    pool.shutdown(wait=True)


def _die_with_parent(parent: int, poll: float = 1.0) -> None:
    """Pool-worker initializer: end this worker and its FEFF stage processes when the build dies.

    A build stopped by a signal (``kill``, a closed terminal) leaves ProcessPoolExecutor workers
    waiting on their queue, and their FEFF stage processes running, for good; each worker leads
    its own process group and kills it once its parent is gone.
    """
    os.setpgrp()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def library_counts(spectra: Iterable[Spectrum], order: Iterable[Any]) -> dict[str, Any]:
    """What the build's order (:func:`~.hosts.deficit_first`) counts in the spectra a library
    already holds, as its keyword arguments: per (element, CN) spectra (``have``) and parent
    structures, per (element, CN, oxidation state) the same, per element all spectra and those of
    Jahn-Teller-elongated octahedra, per (element, state) four-coordinate spectra of tetrahedral
    sites and of those in a network of corner-sharing tetrahedra, per (element, CN, state) five-
    and six-coordinate spectra of sites with a perovskite-like second shell; ``order`` is the plan,
    whose sites tell the geometry (looked up by site: an RPA spectrum's id carries its set's suffix).
    CN and state are the spectra's own labels (CrystalNN, bond valence), not the plan's."""
    from .hosts import A_SITE_CNS

    planned = {g.id: g for g in order}
    have: Counter = Counter()
    states: Counter = Counter()
    totals: Counter = Counter()
    elongated: Counter = Counter()
    tetrahedra: Counter = Counter()
    a_site_shells: Counter = Counter()
    networks: Counter = Counter()
    parents: dict[tuple[str, int], set[str]] = {}
    state_parents: dict[tuple[str, int, int | None], set[str]] = {}
    for sp in spectra:
        site = planned.get(site_id(sp.id))
        if getattr(site, "jahn_teller_elongated", False):
            elongated[sp.element] += 1
        cn, q = sp.labels.get("coordination_number", np.nan), sp.labels.get("oxidation_state", np.nan)
        if not np.isfinite(cn):
            continue
        key = (sp.element, int(cn), int(q) if np.isfinite(q) else None)
        parent = parent_of(PROJECT_SOURCE, str(sp.provenance.get("material_id", sp.id)), sp.provenance)
        have[key[:2]] += 1
        states[key] += 1
        totals[sp.element] += 1
        parents.setdefault(key[:2], set()).add(parent)
        state_parents.setdefault(key, set()).add(parent)
        if key[1] == 4 and getattr(site, "tetrahedral", False):
            tetrahedra[sp.element, key[2]] += 1
        if key[1] == 4 and getattr(site, "tetrahedral_network", False):
            networks[sp.element, key[2]] += 1
        if key[1] in A_SITE_CNS and getattr(site, "a_site_shell", False):
            a_site_shells[key] += 1
    return {"have": have, "states": states, "totals": totals, "elongated": elongated, "tetrahedra": tetrahedra,
            "a_site_shells": a_site_shells, "networks": networks, "parents": parents,
            "state_parents": state_parents}


def compute_project_spectra(
    elements: Iterable[str], per_element: int, cache_dir: str | Path, workers: int = 2,
    params: FeffParameters = LIBRARY_PARAMETERS, progress: bool = True, time_budget: float | None = None,
    cached_only: bool = False, prior: SpectrumCollection | None = None, hosts_per_element: int = 0,
    hosts_root: str | Path | None = None, client: Any = None,
) -> tuple[list[Spectrum], list[dict[str, Any]]]:
    """FEFF10 spectra of generated structures and host sites; returns (good spectra, failure records).

    ``per_element`` prototype-family structures (:mod:`.structures`) and ``hosts_per_element``
    sites in real host structures (:mod:`.hosts`, under ``hosts_root``) per element.
    ``time_budget`` (s) stops submitting new calculations after that long; what finished is kept
    (the cache holds it) so a later call continues. ``cached_only`` runs no FEFF at all: it
    assembles what the cache already holds (to write the library while a build is still going).
    ``prior`` is an earlier library: its spectra of the same structures and parameter set
    (:func:`reusable_spectra`) are taken as they are, so a machine without the FEFF cache grows
    the committed library instead of computing it again; with ``cached_only`` its left-out
    calculations stay recorded as left out.

    ``client`` (a ``distributed.Client``) runs the FEFF calculations as tasks on its Dask cluster
    instead of ``workers`` local processes (see :func:`_results_on_cluster`).
    """
    from .structures import generate

    elements = list(elements)
    by_element = [list(generate([el], per_element)) for el in elements]
    # interleave the elements so that a time-limited build still covers every element evenly
    order = [g for rank in itertools.zip_longest(*by_element) for g in rank if g is not None]
    if hosts_per_element:
        from .hosts import plan

        order += plan(elements, hosts_per_element, hosts_root)
    spectra: list[Spectrum] = []
    failures: list[dict[str, Any]] = []
    reused = reusable_spectra(prior, order, params) if prior is not None else {}
    # an earlier library's left-out calculations stay recorded when nothing is run (cached_only);
    # a build that runs FEFF tries again those whose outcome does not stand (below)
    prior_failed = {f["id"]: f for f in prior.meta.get("failures", [])
                    if failure_set(f, prior.meta) in params.spectra_of} if prior is not None else {}
    for gid, sp in reused.items():
        reason = check_spectrum(sp.energy, sp.mu)  # judged by today's checks, like a cached result
        if reason:
            failures.append({"id": gid, "reason": reason, "feff_parameters": params.name})
        else:
            spectra.append(sp)
    # an earlier library's failures that stand (:func:`~.feff.outcome_stands`, as a cached outcome
    # would) are not run again: a checkout without the FEFF cache retried all of them (session 24:
    # 44 of its first 66 calculations left out again: 31 FEFF stage errors, 11 without an edge, 2 skipped)
    final = {} if cached_only else {i: f for i, f in prior_failed.items() if outcome_stands(f)}
    failures += [final[g.id] for g in order if g.id in final and g.id not in reused]
    pending = [g for g in order if g.id not in reused and g.id not in final]
    if hosts_per_element:  # classes short of spectra run first; the plan itself is unchanged
        from .hosts import deficit_first

        # outcomes already in the cache cost nothing and must not take a short class's places
        known = {} if cached_only else {
            r["id"]: r for r in (_project_job(g, params, str(cache_dir), cached_only=True)
                                 for g in pending if hasattr(g, "materialize")) if not r.get("pending")}
        pending = deficit_first(pending, known=known, **library_counts(spectra, order))
    gens = {g.id: g for g in pending}
    if client is not None:
        results = _results_on_cluster(client, gens, params, Path(cache_dir), time_budget, progress)
    else:
        results = results_local(gens, params, Path(cache_dir), workers, time_budget, cached_only, progress)
    for r in results:
        g = gens[r["id"]]
        if r.get("pending"):
            if r["id"] in prior_failed:
                failures.append(prior_failed[r["id"]])
            continue
        if not r["ok"]:
            # with the policy FEFF ran under, so a later build from this library knows whether it stands
            failures.append({"id": r["id"], "element": g.element, "reason": r["reason"], "feff_parameters": params.name,
                             **({"skipped": True} if r.get("skipped") else {}),
                             **({"retry_policy": r["retry_policy"]} if "retry_policy" in r else {})})
            continue
        parent = getattr(g, "parent", None)
        method = "bond-valence sum posterior (pymatgen BVAnalyzer per site)"
        if getattr(g, "charge_change", 0):
            method += f" of the host, {g.charge_change:+d} (aliovalent dopant)"
        spectra.append(Spectrum(
            energy=r["energy"], mu=r["mu"], element=g.element, edge="K", labels=r["labels"], id=g.id + params.id_suffix,
            provenance={"material_id": parent or g.id, **r["provenance"],
                        **({"parent": parent, "host_species": g.host_species,
                            "oxidation_state_method": method} if parent else {}),
                        "feff_parameters": params.name, "feff_seconds": round(r["seconds"], 2),
                        # None: the parameter set's own SCF mixing; else the bad-counts fallback's
                        "scf_mixing_fallback": r["scf_mixing_fallback"]},
        ))
    if prior is not None:  # the planned sites' spectra of other parameter sets stay as they are
        kept, kept_failures = kept_from_other_sets(prior, params, {g.id for g in order})
        spectra += list(kept)
        failures += kept_failures
    return spectra, failures


def results_local(gens: dict[str, Any], params: FeffParameters, cache_dir: Path, workers: int,
                  time_budget: float | None, cached_only: bool, progress: bool) -> Iterator[dict[str, Any]]:
    """Job results of ``gens`` (id -> site generator) from a local process pool of ``workers`` (or
    read inline from the FEFF cache with ``cached_only``), as they finish: dicts with ``id``, ``ok``
    and the spectrum or the reason (the build's, and the core-hole study's, ``scripts/corehole_transfer.py``)."""
    from concurrent.futures import Future

    from tqdm import tqdm

    def run_inline(g):
        f: Future = Future()
        f.set_result(_project_job(g, params, str(cache_dir), cached_only=True))
        return f

    t0 = time.monotonic()
    # reading the cache needs no worker processes
    with (contextlib.nullcontext() if cached_only else _pool(workers)) as pool:
        futs = [run_inline(g) if cached_only else pool.submit(_project_job, g, params, str(cache_dir))
                for g in gens.values()]
        with tqdm(total=len(futs), desc="FEFF10 spectra", disable=not progress, unit="site") as bar:
            for fut in as_completed(futs):
                bar.update()
                if time_budget is not None and time.monotonic() - t0 > time_budget:
                    for f in futs:
                        f.cancel()
                if not fut.cancelled():
                    yield fut.result()


# -- a Dask cluster (xanes_agent.cluster): workers compute in their own scratch space, the client
# -- owns the cache and writes each finished job into it as it arrives ----------------------------

#: The cache folders a cluster job may write into (relative to the cache root): FEFF entries and
#: host-site job records; anything else in a job's files is refused.
_JOB_FOLDERS = ("feff", "jobs")


def _cluster_job(gen: Any, params: FeffParameters) -> dict[str, Any]:
    """One library site on a cluster worker: :func:`_project_job` in a scratch cache, returned with
    the cache files it wrote (the worker need not share a file system with the client)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xanes-agent-job-") as tmp:
        root = Path(tmp)
        result = _project_job(gen, params, str(root / "feff"))
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {"result": result, "files": files}


def _store_job_files(cache_root: Path, files: dict[str, bytes]) -> None:
    """Write a cluster job's cache files under ``cache_root``, each atomically, records last.

    ``result.json`` (what marks a FEFF entry done) and the host-site job record are written after
    the spectrum, so a build killed in between leaves an entry that is simply computed again.
    """
    def rank(rel: str) -> int:
        return 2 if rel.startswith("jobs/") else 1 if rel.endswith("/result.json") else 0

    for rel in sorted(files, key=lambda r: (rank(r), r)):
        parts = Path(rel).parts
        if not parts or parts[0] not in _JOB_FOLDERS or ".." in parts or Path(rel).is_absolute():
            raise ValueError(f"a cluster job returned a file outside the cache folders: {rel!r}")
        path = cache_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(files[rel])
        tmp.replace(path)


def _results_on_cluster(client: Any, gens: dict[str, Any], params: FeffParameters, cache_dir: Path,
                        time_budget: float | None, progress: bool) -> Iterator[dict[str, Any]]:
    """Job results computed on a Dask cluster, streamed into the local cache as they complete.

    What the cache already holds is read here without a task; every other site is one task
    (retried :data:`~xanes_agent.cluster.TASK_RETRIES` times if it raises; re-scheduled by Dask if
    its worker dies). A lost worker costs only its running tasks: each finished one is in the cache
    already. A task that fails for good is reported as left out for now (not cached), so the next
    build tries it again.
    """
    from distributed import as_completed as dask_completed
    from tqdm import tqdm

    from ..cluster import TASK_RETRIES, describe

    print(describe(client), flush=True)
    todo = []
    for g in gens.values():
        r = _project_job(g, params, str(cache_dir), cached_only=True)
        if r.get("pending"):
            todo.append(g)
        else:
            yield r
    t0 = time.monotonic()
    # the key names the site and parameter set, so the dashboard shows what runs where; a
    # resubmission of the same site (another build on the same scheduler) shares its result
    futs = {client.submit(_cluster_job, g, params, key=f"feff-{params.name}-{g.id}", retries=TASK_RETRIES,
                          pure=False): g for g in todo}
    cache_root = cache_dir.parent
    with tqdm(total=len(futs), desc="FEFF10 spectra (cluster)", disable=not progress, unit="site") as bar:
        for fut in dask_completed(futs):
            bar.update()
            g = futs.pop(fut)
            if time_budget is not None and time.monotonic() - t0 > time_budget and futs:
                client.cancel(list(futs))
            if fut.status == "cancelled":
                continue
            try:
                payload = fut.result()
                _store_job_files(cache_root, payload["files"])
            except Exception as exc:  # noqa: BLE001 - one lost site must not end a build
                log.warning("%s: cluster task failed for good (%s: %s); left out of this build, tried again "
                            "by the next", g.id, type(exc).__name__, exc)
                yield {"id": g.id, "ok": False, "pending": True, "reason": f"cluster task failed: {exc}"}
                continue
            finally:
                fut.release()
            # read back through the cache: the same checks and the same arrays as a local build
            yield _project_job(g, params, str(cache_dir), cached_only=True)


def _same_structure(g: Any, provenance: dict[str, Any]) -> bool:
    """Whether a library row's recorded structure is the one :func:`generate` makes for its id now."""
    rec = provenance.get("structure_params") or {}
    if (provenance.get("family"), provenance.get("seed"), provenance.get("absorber_index")) != (
            g.family, g.seed, g.absorber_index) or set(rec) != set(g.params):
        return False
    for k, v in g.params.items():
        if isinstance(v, str) or isinstance(rec[k], str):
            if v != rec[k]:
                return False
        elif not np.allclose(np.asarray(rec[k], dtype=float), np.asarray(v, dtype=float), rtol=1e-9, atol=1e-9):
            return False
    return True


def reusable_spectra(prior: SpectrumCollection, gens: Iterable[Any], params: FeffParameters) -> dict[str, Spectrum]:
    """The spectra of ``prior`` (an earlier library) that a build of ``gens`` may take as they are.

    A row qualifies when it is a project FEFF10 spectrum of the same id (the site's, with the set's
    :attr:`~.feff.FeffParameters.id_suffix`), computed with the same
    parameter set (by name) or one whose spectra it reproduces (``params.spectra_as``), whose
    recorded structure parameters (lattice, strain, distortion, Shannon radius, absorber site) match
    the structure generated for that id today. Anything else (a changed generator, another
    parameter set) is computed again rather than trusted.
    """
    want = {g.id + params.id_suffix: g for g in gens}
    rows = prior.where(source=PROJECT_SOURCE) if len(prior) else prior
    out: dict[str, Spectrum] = {}
    for i, sid in enumerate(rows.ids.tolist()):
        g = want.get(sid)
        if g is None:
            continue
        gid = g.id
        sp = rows.spectrum(i)
        if spectrum_set(sp.provenance) in params.spectra_of and _same_structure(g, sp.provenance):
            out[gid] = sp
    return out


def _prior_omnixas_labels(prior: SpectrumCollection) -> dict[str, Any]:
    """The label-cache records of an earlier library's OmniXAS rows (labels, formula, anions)."""
    from .omnixas import SOURCE

    rows = prior.where(source=SOURCE) if len(prior) else prior
    out = {}
    for sp in rows:
        labels = {k: sp.labels.get(k, float("nan")) for k in ("coordination_number", "mean_nn_distance",
                                                               "oxidation_state")}
        out[sp.id] = {"labels": labels, "formula": sp.provenance.get("formula"),
                      "anions": sp.provenance.get("anions")}
    return out


def omnixas_collection(root: str | Path | None = None, cache_dir: str | Path = ".cache", workers: int = 2,
                       progress: bool = True, limit: int | None = None,
                       prior: SpectrumCollection | None = None) -> SpectrumCollection:
    """The OmniXAS Cu spectra with CrystalNN / bond-valence labels (cached in ``cache_dir``).

    ``prior`` (an earlier library) supplies the labels of the sites it already holds, so they are
    not derived again (bond valence on large cells takes minutes a site); spectra are always read
    from the files under ``root``.
    """
    from tqdm import tqdm

    from .omnixas import SOURCE, iter_entries
    from .readers import read_xmu

    entries = list(iter_entries(root))[:limit]
    cache = Path(cache_dir) / "omnixas_labels.json"
    known: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    if prior is not None:
        known = {**_prior_omnixas_labels(prior), **known}
    todo = [e for e in entries if f"{e.material_id}/{e.site}" not in known]
    if todo:
        with _pool(workers) as pool:
            futs = {pool.submit(_omnixas_labels, e): e for e in todo}
            for i, fut in enumerate(tqdm(as_completed(futs), total=len(futs), desc="OmniXAS labels",
                                         disable=not progress, unit="site")):
                e = futs[fut]
                known[f"{e.material_id}/{e.site}"] = fut.result()
                if i % 200 == 0:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    cache.write_text(json.dumps(known))
        cache.write_text(json.dumps(known))
    spectra = []
    for e in entries:
        info = known[f"{e.material_id}/{e.site}"]
        s = read_xmu(e.xmu, element="Cu")
        s.id = f"{e.material_id}/{e.site}"
        s.labels = {k: v for k, v in info["labels"].items() if v == v}  # drop NaN
        s.provenance = {"material_id": e.material_id, "absorber_index": e.site, "formula": info["formula"],
                        "anions": info["anions"], "code": "FEFF 9.9.1", "settings": "MP-style (RPA, SCF 7 A, FMS 9 A)",
                        "origin": "OmniXAS (Kharel et al., arXiv:2409.19552), BSD-3-Clause"}
        spectra.append(s)
    coll = SpectrumCollection.from_spectra(spectra, source=SOURCE)
    coll.split = np.array([split_for(m) for m in coll.material_id], dtype=str)
    return coll


def build_library(
    out: str | Path, per_element: int = 300, elements: Iterable[str] = ELEMENTS, workers: int = 2,
    cache_dir: str | Path = ".cache", params: FeffParameters = LIBRARY_PARAMETERS,
    include_omnixas: bool = True, omnixas_root: str | Path | None = None, progress: bool = True,
    time_budget: float | None = None, cached_only: bool = False, resume_from: str | Path | None = None,
    hosts_per_element: int = 0, client: Any = None,
) -> SpectrumCollection:
    """Compute (or take from the cache) every spectrum and write the library to ``out``.

    ``per_element`` prototype-family structures and ``hosts_per_element`` sites in the real host
    structures under ``omnixas_root`` (:mod:`.hosts`) per element.

    ``resume_from`` names an earlier library whose matching spectra are kept rather than computed
    again (see :func:`reusable_spectra`); it is read before ``out`` is written, so both may be the
    same file. ``client`` (a ``distributed.Client``) runs the FEFF calculations on a Dask cluster.
    """
    cache_dir = Path(cache_dir)
    prior = read_library(resume_from) if resume_from is not None else None
    omnixas = omnixas_collection(omnixas_root, cache_dir, workers, progress, prior=prior) if include_omnixas else None
    spectra, failures = compute_project_spectra(elements, per_element, cache_dir / "feff", workers, params,
                                                progress, time_budget, cached_only, prior,
                                                hosts_per_element, omnixas_root, client)
    spectra.sort(key=lambda s: (s.element, s.provenance["family"], s.provenance["seed"], s.id))
    project = SpectrumCollection.from_spectra(spectra, source=PROJECT_SOURCE)
    project.split = np.array([split_for(m) for m in project.material_id], dtype=str)
    lib = SpectrumCollection.concatenate([project] + ([omnixas] if omnixas is not None else []))
    kept_sets = sorted(({spectrum_set(sp.provenance) for sp in spectra} | {f.get("feff_parameters") for f in failures})
                       - set(params.spectra_of) - {None})
    lib.meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "feff_parameters": asdict(params),
        # sets of earlier builds whose spectra the library keeps (their ids carry the set's suffix)
        "kept_feff_parameters": {n: asdict(PARAMETER_SETS[n]) if n in PARAMETER_SETS else None for n in kept_sets},
        "per_element_target": per_element,
        "hosts_per_element_target": hosts_per_element,
        "failures": failures,
        "label_method": "CrystalNN (pymatgen) coordination and mean neighbour distance; oxidation state "
                        "by construction (prototype families), the host site's bond-valence posterior (real "
                        "host structures, isovalent substitution) or BVAnalyzer (OmniXAS); "
                        "feff_charge_transfer from FEFF SCF where converged; no Bader charges",
        "split": f"held-out 'test' = {TEST_FRACTION:.0%} of materials by sha256 of the material id",
        "sources": {PROJECT_SOURCE: "FEFF10 (feff10-rs) spectra of prototype-family oxide structures and "
                                        "of sites in real Materials Project host oxides (provenance 'parent')",
                    "omnixas-feff9": "OmniXAS Cu K-edge FEFF 9.9.1, BSD-3-Clause (see LICENSE-omnixas)"},
    }
    annotate_structure_types(lib, omnixas_root, cache_dir / "frameworks.json")
    write_library(lib, out)
    return lib


def table1(lib: SpectrumCollection) -> str:
    """Counts per source, element and coordination class, like Table 1 of Torrisi et al.

    ``parents`` counts distinct parent structures (a prototype family for generated structures, the
    Materials Project host for sites in real structures, the material for OmniXAS). ``left out``
    counts the element's FEFF calculations that failed or were unphysical, ``skipped`` the host
    sites whose CrystalNN coordination fell outside 4-6 (from the library's ``failures`` record;
    the project source only). ``charge`` counts the spectra with a computed charge
    (``feff_charge_transfer``: FEFF's converged SCF, the ``reduced-v2`` sites).
    """
    failed: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for f in lib.meta.get("failures", []):
        el = f.get("element") or (str(f.get("id", "")).rsplit("-", 2)[-2:-1] or [None])[0]
        if el:
            bucket = skipped if f.get("skipped") else failed
            bucket[el] = bucket.get(el, 0) + 1
    lines = [f"{'source':16s} {'element':7s} {'total':>6s} {'parents':>7s} {'CN4':>5s} {'CN5':>5s} {'CN6':>5s} "
             f"{'other':>6s} {'test':>5s} {'d(A) mean':>9s} {'ox mean':>8s} {'charge':>6s} {'left out':>8s} "
             f"{'skipped':>7s}"]
    for src in sorted(set(lib.source.tolist())):
        for el in sorted(set(lib.where(source=src).element.tolist())):
            sub = lib.where(source=src, element=el)
            cn = sub.labels["coordination_number"]
            counts = [int(np.sum(cn == k)) for k in (4, 5, 6)]
            other = len(sub) - sum(counts)
            left = str(failed.get(el, 0)) if src == PROJECT_SOURCE else ""
            skip = str(skipped.get(el, 0)) if src == PROJECT_SOURCE else ""
            lines.append(
                f"{src:16s} {el:7s} {len(sub):6d} {len(set(parent_groups(sub).tolist())):7d} {counts[0]:5d} "
                f"{counts[1]:5d} {counts[2]:5d} {other:6d} "
                f"{int(np.sum(sub.split == 'test')):5d} {np.nanmean(sub.labels['mean_nn_distance']):9.3f} "
                f"{np.nanmean(sub.labels['oxidation_state']):8.2f} "
                f"{int(np.isfinite(sub.labels['feff_charge_transfer']).sum()):6d} {left:>8s} {skip:>7s}")
    lines.append(f"{'all':16s} {'':7s} {len(lib):6d}")
    return "\n".join(lines)


def environments(lib: SpectrumCollection, source: str = PROJECT_SOURCE) -> str:
    """Per element and coordination class of ``source``: spectra and distinct parent structures,
    then the same per formal oxidation state (``+6: 52/50`` = 52 spectra from 50 parents): how far
    each class is spread over the states the element takes there (the library's targets, issue 13:
    >= 150 spectra from >= 15 parents per class, over e.g. Cr6+ and Cr4+ tetrahedra)."""
    lines = [f"{'element':7s} {'CN':>2s} {'spectra':>7s} {'parents':>7s}  by oxidation state: spectra/parents"]
    sub = lib.where(source=source)
    groups = parent_groups(sub)
    cn, ox = sub.labels["coordination_number"], sub.labels["oxidation_state"]
    for el in sorted(set(sub.element.tolist())):
        for k in (4, 5, 6):
            m = (sub.element == el) & (cn == k)
            states = []
            for q in np.unique(ox[m & np.isfinite(ox)]):
                mq = m & (ox == q)
                states.append(f"{q:+g}: {int(mq.sum())}/{len(set(groups[mq].tolist()))}")
            if np.any(m & ~np.isfinite(ox)):
                states.append(f"unknown: {int(np.sum(m & ~np.isfinite(ox)))}")
            lines.append(f"{el:7s} {k:2d} {int(m.sum()):7d} {len(set(groups[m].tolist())):7d}  {'  '.join(states)}")
    return "\n".join(lines)


def parent_groups(lib: SpectrumCollection) -> np.ndarray:
    """The parent structure of each spectrum: the prototype family of a generated structure, the
    host's Materials Project id for a site in a real structure, the material otherwise. Spectra of
    one parent are near relatives; hold-out evaluations keep them on one side."""
    return np.array([parent_of(src, mat, json.loads(prov) if isinstance(prov, str) else (prov or {}))
                     for src, mat, prov in zip(lib.source.tolist(), lib.material_id.tolist(),
                                               lib.provenance.tolist())], dtype=str)


def type_groups(lib: SpectrumCollection) -> np.ndarray:
    """Each spectrum's structure type where the library knows it, else its parent structure
    (:func:`parent_groups`): ``type:<name>`` for a parent the library's ``meta["structure_types"]``
    names (:func:`annotate_structure_types`: the prototype families, the families of one framework
    sharing a name, and the hosts of a family's framework). Hold-out folds by these groups keep a
    structure type on one side (a spinel family with the ~120 spinel hosts). Needs nothing but the
    library (no pymatgen, no structures); a library without the table (built before session 26)
    gives the parents."""
    table = lib.meta.get(STRUCTURE_TYPES_KEY)
    # read from a file: only text -> non-empty text is used (a label to group by, nothing more)
    table = table if isinstance(table, dict) else {}
    types = {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str) and v}
    return np.array([f"type:{types[p]}" if p in types else p for p in parent_groups(lib).tolist()], dtype=str)


def annotate_structure_types(lib: SpectrumCollection, root: str | Path | None = None,
                             cache_file: str | Path | None = None) -> SpectrumCollection:
    """Put into ``lib.meta["structure_types"]`` the structure type of each prototype family
    (``family:<name>``, :func:`~.frameworks.family_types`) and of every host parent whose framework
    is a family's (read from ``root/<id>/POSCAR``, :func:`~.frameworks.hosts_of_family_types`), so that
    training and benchmarks can keep a type together without pymatgen or the structures. Returns
    ``lib``."""
    from .frameworks import family_types, hosts_of_family_types

    hosts = sorted({p for p in parent_groups(lib).tolist() if not p.startswith("family:")})
    table = {f"family:{fam}": t for fam, t in family_types().items()}
    table.update({h: t for t, members in hosts_of_family_types(hosts, root, cache_file).items() for h in members})
    lib.meta[STRUCTURE_TYPES_KEY] = table
    return lib


def with_structure_types(lib: SpectrumCollection, root: str | Path | None = None,
                         cache_file: str | Path | None = None) -> SpectrumCollection:
    """``lib`` with its structure-type table: the one the build wrote, or, for a library built
    before session 26, one annotated here from the host structures
    (:func:`annotate_structure_types`, which needs pymatgen and the structures)."""
    return lib if STRUCTURE_TYPES_KEY in lib.meta else annotate_structure_types(lib, root, cache_file)


def parent_of(source: str, material_id: str, provenance: dict[str, Any]) -> str:
    """One spectrum's parent structure (:func:`parent_groups`)."""
    if source == PROJECT_SOURCE and not provenance.get("parent"):
        return f"family:{provenance.get('family', material_id)}"
    return str(provenance.get("parent") or material_id)


__all__ = ["LABEL_NAMES", "annotate_structure_types", "build_library", "bundled_library_path", "environments",
           "kept_from_other_sets", "library_counts", "parameter_sets", "site_id",
           "load_bundled_library", "parent_groups", "parent_of", "reusable_spectra", "split_for", "table1",
           "type_groups", "with_structure_types"]
