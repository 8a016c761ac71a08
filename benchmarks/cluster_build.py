"""The same small library build through a Dask cluster with 1 and 2 workers: speed-up and overhead.

Each run starts a real ``distributed.LocalCluster`` (worker processes, one thread each, loopback)
and builds the same sites into a fresh cache with ``compute_project_spectra(client=...)``. Printed:
wall time per worker count and the speed-up; the per-task overhead two ways: (a) the round trip of
a no-op task through the scheduler, (b) what the cluster added to the FEFF time the tasks
themselves measured, ``(wall x workers - sum of FEFF seconds) / tasks``, which includes building
the structure in the worker, shipping the cache files back and writing them.

    python benchmarks/cluster_build.py [--per-element 3] [--elements Ti Fe Cu] [--parameters fast-noscf]

Run it on an otherwise idle machine: the build's FEFF runs are CPU-bound, so anything else running
(e.g. a background library build) takes cores from the 2-worker run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def noop(i: int) -> int:
    return i


def run(workers: int, elements: list[str], per_element: int, params) -> dict:
    from distributed import Client, LocalCluster

    from xanes_agent.data.library import compute_project_spectra

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        # (a) scheduler round trip of tiny tasks, submitted one after another
        n = 200
        t = time.perf_counter()
        for i in range(n):
            client.submit(noop, i, pure=False).result()
        noop_ms = (time.perf_counter() - t) / n * 1e3
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            spectra, failures = compute_project_spectra(elements, per_element, Path(tmp) / "feff", params=params,
                                                        progress=False, client=client)
            wall = time.perf_counter() - t
    feff = sum(s.provenance["feff_seconds"] for s in spectra)
    tasks = len(spectra) + len(failures)
    return {"workers": workers, "wall": wall, "tasks": tasks, "ok": len(spectra), "feff": feff,
            "noop_ms": noop_ms, "overhead": (wall * workers - feff) / tasks,
            "mu": {s.id: s.mu for s in spectra}}


def main() -> None:
    from xanes_agent.data.feff import PARAMETER_SETS

    ap = argparse.ArgumentParser()
    ap.add_argument("--per-element", type=int, default=3)
    ap.add_argument("--elements", nargs="+", default=["Ti", "Fe", "Cu"])
    ap.add_argument("--parameters", default="fast-noscf", choices=sorted(PARAMETER_SETS))
    a = ap.parse_args()
    params = PARAMETER_SETS[a.parameters]
    print(f"{len(a.elements) * a.per_element} sites ({', '.join(a.elements)} x {a.per_element}), FEFF10 set "
          f"{params.name}, LocalCluster on 127.0.0.1, one thread per worker")
    rows = [run(w, a.elements, a.per_element, params) for w in (1, 2)]
    print(f"{'workers':>8}{'wall s':>9}{'sites':>7}{'FEFF s':>9}{'no-op task ms':>15}{'overhead s/task':>17}")
    for r in rows:
        print(f"{r['workers']:>8}{r['wall']:>9.1f}{r['ok']:>7}{r['feff']:>9.1f}{r['noop_ms']:>15.2f}"
              f"{r['overhead']:>17.2f}")
    same = rows[0]["mu"].keys() == rows[1]["mu"].keys() and all(
        np.array_equal(rows[0]["mu"][k], rows[1]["mu"][k]) for k in rows[0]["mu"])
    print(f"speed-up 2 vs 1 workers: {rows[0]['wall'] / rows[1]['wall']:.2f}x; spectra identical: {same}")


if __name__ == "__main__":
    main()
