"""Hostile and broken input, at volume: nothing escapes, nothing valid is lost, nothing impossible is taken.

    python benchmarks/robustness.py [--streams 2000] [--bundle-edits 60] [--files 1200] [--runs 1000]

1. **Document streams**: real runs (start, descriptor, events and event pages of a Cu K-edge scan)
   with junk spliced in at random places: None and list documents, unknown names, events without
   data, NaN and infinite readings, booleans as mu, energies <= 0, 1e30 eV, another edge's
   energies, keV readings. Fed through ``SafeRunRouter([agent_factory(...)])`` as ``serve`` and
   ``replay`` do. Counted: exceptions escaping, valid readings lost without a count, impossible
   readings taken.
2. **Bundle edits**: a real bundle with one node-table entry or manifest field changed and re-signed
   (valid hashes: only validation stands between it and the compiled walk), each loaded in a child
   process with a time limit, so a crash or a hang is seen as one. Counted: crashes, hangs,
   refusals that were not ``BundleError``.
3. **Malformed files**: xmu.dat, Materials Project JSON, two-column and POSCAR files cut, with
   bytes flipped, lines swapped or values replaced. Counted: exceptions other than
   ``DataFormatError``.
4. **Memory**: ``--runs`` runs of 1,000 readings each (pages of 100) through the same routing;
   resident memory after 10 %, 50 % and 100 % of them (finished runs' state must be released).

Prints one table; exits 1 if any count that must be zero is not.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from xanes_agent.agent import ModelStore, agent_factory
from xanes_agent.agent.server import SafeRunRouter

EDGE = 8979.0


def _run_docs(uid: str, energies: np.ndarray, mu: np.ndarray, page: int = 1) -> list[tuple[str, dict]]:
    docs = [("start", {"uid": uid, "time": 0.0, "element": "Cu", "edge": "K",
                       "xas": {"energy_field": "e", "mu_field": "mu"}}),
            ("descriptor", {"uid": uid + "-d", "run_start": uid, "name": "primary", "time": 0.0,
                            "data_keys": {"e": {"dtype": "number", "shape": [], "source": "x", "units": "eV"},
                                          "mu": {"dtype": "number", "shape": [], "source": "x"}}})]
    for a in range(0, len(energies), page):
        e, m = energies[a:a + page], mu[a:a + page]
        if page == 1:
            docs.append(("event", {"uid": f"{uid}-e{a}", "descriptor": uid + "-d", "seq_num": a + 1, "time": 0.0,
                                   "data": {"e": float(e[0]), "mu": float(m[0])}, "timestamps": {"e": 0.0, "mu": 0.0}}))
        else:
            docs.append(("event_page", {"uid": [f"{uid}-e{a + i}" for i in range(len(e))], "descriptor": uid + "-d",
                                        "seq_num": list(range(a + 1, a + len(e) + 1)), "time": [0.0] * len(e),
                                        "data": {"e": e.tolist(), "mu": m.tolist()},
                                        "timestamps": {"e": [0.0] * len(e), "mu": [0.0] * len(e)}, "filled": {}}))
    docs.append(("stop", {"uid": uid + "-s", "run_start": uid, "time": 0.0, "exit_status": "success"}))
    return docs


def _event(d: str, e, mu) -> dict:
    """A well-formed event of descriptor ``d`` (its readings may still be bad)."""
    return {"descriptor": d, "uid": f"{d}-x{np.random.default_rng().integers(1 << 40)}", "seq_num": 0, "time": 0.0,
            "data": {"e": e, "mu": mu}, "timestamps": {"e": 0.0, "mu": 0.0}}


def _junk(rng: np.random.Generator, uid: str) -> tuple[tuple[str, dict], int, int]:
    """One junk document: (it, valid readings it carries, impossible readings it carries)."""
    d = uid + "-d"
    kind = int(rng.integers(0, 10))
    if kind == 0:
        return ("event", None), 0, 0  # type: ignore[return-value]
    if kind == 1:
        return (None, {}), 0, 0  # type: ignore[return-value]
    if kind == 2:
        return ("start", [1, 2]), 0, 0  # type: ignore[return-value]
    if kind == 3:
        return ("no_such_document", {"uid": "x"}), 0, 0
    if kind == 4:
        return ("event", {"descriptor": d, "data": {}}), 0, 0
    if kind == 5:  # NaN / inf readings: dropped and counted
        return ("event", _event(d, float("nan"), float("inf"))), 0, 0
    if kind == 6:  # impossible energies
        e = [0.0, -5.0, 1e30, 5000.0][int(rng.integers(0, 4))]
        return ("event", _event(d, e, 0.5)), 0, 1
    if kind == 7:  # boolean mu
        return ("event", _event(d, EDGE + 3.0, True)), 0, 1
    if kind == 8:  # a keV reading: valid, converted
        e = EDGE + 100.0 + int(rng.integers(0, 10**6)) * 1e-3  # a distinct energy each (duplicates average)
        return ("event", _event(d, e / 1000, 1.0)), 1, 0
    return ("event_page", {"descriptor": d, "data": {"e": "junk"}}), 0, 0


def fuzz_documents(model, n_streams: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    escaped = lost = accepted_impossible = valid_total = 0
    for s in range(n_streams):
        uid = f"r{s}"
        n = int(rng.integers(5, 40))
        energies = np.sort(rng.choice(np.arange(EDGE - 30, EDGE + 70, 0.5), n, replace=False))
        mu = 1 / (1 + np.exp(-(energies - EDGE - 5)))
        docs = _run_docs(uid, energies, mu, page=int(rng.choice([1, 1, 5])))
        extra_valid = impossible = 0
        for _ in range(int(rng.integers(0, 8))):
            doc, v, imp = _junk(rng, uid)
            docs.insert(int(rng.integers(2, len(docs))), doc)
            extra_valid += v
            impossible += imp
        factory = agent_factory(ModelStore(models={"Cu": model}))
        router = SafeRunRouter([factory])
        for name, doc in docs:
            try:
                router(name, doc)
            except Exception:  # noqa: BLE001 - the count this benchmark exists for
                escaped += 1
        reports = [r for a in factory.agents for r in a.finished]
        valid = n + extra_valid
        valid_total += valid
        got = reports[0]["n_points"] if reports else 0
        counted = (reports[0].get("n_rejected", 0) if reports else 0)
        lost += max(0, valid - got)
        accepted_impossible += max(0, impossible - counted)
    return {"streams": n_streams, "valid readings": valid_total, "exceptions escaping": escaped,
            "valid readings lost": lost, "impossible readings taken": accepted_impossible}


def _load_in_child(path: str, q) -> None:
    from xanes_agent.agent.predictor import LivePredictor
    from xanes_agent.models.model import BundleError, ElementModel

    try:
        m = ElementModel.load(path)
    except BundleError:
        q.put("refused")
        return
    except Exception as exc:  # noqa: BLE001
        q.put(f"other: {type(exc).__name__}")
        return
    e = np.linspace(EDGE - 30, EDGE + 70, 150)
    LivePredictor(m).update(e, 1 / (1 + np.exp(-(e - EDGE))))
    q.put("loaded")


def fuzz_bundles(bundle: Path, n_edits: int, seed: int = 0) -> dict:
    from xanes_agent.models.model import _bundle_digest, _digest

    rng = np.random.default_rng(seed)
    counts = {"refused (BundleError)": 0, "loaded and predicted": 0, "other exception": 0, "crash": 0, "hang": 0}
    ctx = multiprocessing.get_context("spawn")
    with np.load(bundle, allow_pickle=False) as z:
        base = {k: z[k] for k in z.files}
    names = [k for k in base if k.split("__")[-1] in ("left", "right", "feature", "threshold", "roots",
                                                       "tree_forest", "shape", "value")]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_edits):
            arrays = {k: v.copy() for k, v in base.items()}
            manifest = json.loads(str(arrays.pop("manifest")))
            if i % 5 == 4:  # a manifest field
                field = ["featurization", "grid", "properties", "element", "calibration"][i // 5 % 5]
                manifest[field] = [None, "pointwise", {"start": "x"}, 7, []][int(rng.integers(0, 5))]
            else:
                k = names[int(rng.integers(0, len(names)))]
                a = arrays[k].reshape(-1)
                j = int(rng.integers(0, len(a)))
                a[j] = [10**7, -1, 0, float("nan"), a[max(j - 1, 0)]][int(rng.integers(0, 5))] \
                    if a.dtype.kind == "f" else [10**7, -1, 0, j, max(j - 1, 0)][int(rng.integers(0, 5))]
            manifest["sha256"] = {k: _digest(v) for k, v in arrays.items()}
            manifest["digest"] = _bundle_digest(manifest)
            path = Path(tmp) / f"e{i}.npz"
            np.savez_compressed(path, manifest=np.array(json.dumps(manifest)), **arrays)
            q = ctx.Queue()
            p = ctx.Process(target=_load_in_child, args=(str(path), q))
            p.start()
            p.join(60)
            if p.is_alive():
                p.kill()
                counts["hang"] += 1
            elif p.exitcode != 0:
                counts["crash"] += 1
            else:
                r = q.get()
                key = {"refused": "refused (BundleError)", "loaded": "loaded and predicted"}.get(r, "other exception")
                counts[key] += 1
    return {"bundle edits": n_edits, **counts}


def fuzz_files(n_files: int, seed: int = 0) -> dict:
    from xanes_agent.data import DataFormatError, read_spectrum
    from xanes_agent.data.omnixas import default_root
    from xanes_agent.data.readers import read_poscar

    rng = np.random.default_rng(seed)
    root = default_root()
    xmu = (root / "mp-1036393" / "FEFF-XANES" / "015_Cu" / "xmu.dat").read_text()
    poscar = (root / "mp-1036393" / "POSCAR").read_text()
    e = np.linspace(8970, 9030, 40)
    two = "energy,mu\n" + "\n".join(f"{x},{0.5 + 0.01 * i}" for i, x in enumerate(e))
    mp = json.dumps({"spectrum": {"x": e.tolist(), "y": (0.01 * np.arange(40)).tolist()},
                     "absorbing_element": "Cu", "edge": "K", "labels": {"coordination_number": 4}})
    originals = [("xmu.dat", xmu), ("doc.json", mp), ("two.csv", two), ("POSCAR", poscar)]
    other = 0
    refused = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_files):
            name, text = originals[i % 4]
            lines = text.splitlines()
            how = int(rng.integers(0, 6))
            if how == 0:
                text = text[: int(rng.integers(0, len(text)))]
            elif how == 1 and lines:
                j = int(rng.integers(0, len(lines)))
                lines[j] = lines[j].replace(str(int(rng.integers(0, 10))), ["x", "-", "nan", "1e999", "999"][i % 5])
                text = "\n".join(lines)
            elif how == 2 and len(lines) > 2:
                a, b = rng.choice(len(lines), 2, replace=False)
                lines[a], lines[b] = lines[b], lines[a]
                text = "\n".join(lines)
            elif how == 3:
                raw = bytearray(text.encode())
                for _ in range(int(rng.integers(1, 10))):
                    raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
                text = raw.decode("latin-1")
            elif how == 4 and name == "doc.json":
                d = json.loads(mp)
                d[["labels", "spectrum", "absorbing_element", "edge"][i % 4]] = [[1], "x", None, {"a": 1}][i % 4]
                text = json.dumps(d)
            else:
                text = text.replace(".", ",", int(rng.integers(1, 5)))
            path = Path(tmp) / f"{i}" / name
            path.parent.mkdir()
            path.write_text(text, encoding="latin-1")
            try:
                if name == "POSCAR":
                    read_poscar(path)
                else:
                    read_spectrum(path, element=None if name != "two.csv" else "Cu")
            except DataFormatError:
                refused += 1
            except Exception as exc:  # noqa: BLE001 - the count this benchmark exists for
                other += 1
                print(f"  {name} ({how}): {type(exc).__name__}: {exc}"[:160])
    return {"malformed files": n_files, "DataFormatError": refused, "other exceptions": other}


def memory(model, n_runs: int) -> dict:
    factory = agent_factory(ModelStore(models={"Cu": model}))
    router = SafeRunRouter([factory])
    e = np.linspace(EDGE - 30, EDGE + 70, 1000)
    mu = 1 / (1 + np.exp(-(e - EDGE - 5)))
    rss = {}
    t0 = time.perf_counter()
    for r in range(n_runs):
        for name, doc in _run_docs(f"m{r}", e, mu, page=100):
            router(name, doc)
        if r + 1 in (max(1, n_runs // 10), n_runs // 2, n_runs):
            rss[r + 1] = _rss_mb()
    return {"runs": n_runs, "events": n_runs * 1000, "seconds": round(time.perf_counter() - t0, 1),
            **{f"RSS after {k} runs (MB)": round(v, 1) for k, v in rss.items()}}


def _rss_mb() -> float:
    """Resident set size now (MB), from /proc (Linux); the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--bundle-edits", type=int, default=60)
    ap.add_argument("--files", type=int, default=1200)
    ap.add_argument("--runs", type=int, default=1000)
    a = ap.parse_args()
    from xanes_agent.data.library import load_bundled_library
    from xanes_agent.models.training import TrainConfig, train_element

    lib = load_bundled_library().where(element="Cu", source="omnixas-feff9")
    lib = lib[np.sort(np.random.default_rng(0).choice(len(lib), 600, replace=False))]
    model = train_element(lib, "Cu", TrainConfig(n_seeds=2, n_estimators=10, calibration_seeds=1), progress=False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = model.save(Path(tmp) / "cu.npz")
        for name, fn in (("documents", lambda: fuzz_documents(model, a.streams)),
                         ("bundles", lambda: fuzz_bundles(bundle, a.bundle_edits)),
                         ("files", lambda: fuzz_files(a.files)),
                         ("memory", lambda: memory(model, a.runs))):
            t0 = time.perf_counter()
            r = fn()
            results.append((name, r))
            print(f"{name} ({time.perf_counter() - t0:.0f} s): " + ", ".join(f"{k} {v}" for k, v in r.items()),
                  flush=True)
    must_be_zero = [("documents", "exceptions escaping"), ("documents", "valid readings lost"),
                    ("documents", "impossible readings taken"), ("bundles", "crash"), ("bundles", "hang"),
                    ("bundles", "other exception"), ("files", "other exceptions")]
    d = dict(results)
    bad = [(n, k) for n, k in must_be_zero if d[n][k]]
    print("all zero" if not bad else f"NOT zero: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
