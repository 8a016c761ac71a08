"""Wall time and peak memory to train one element (all properties, 10 seeds), same run.

    python benchmarks/train.py [--element Cu] [--n 1500] [--trees 100] [--jobs 1]
"""

import argparse
import resource
import time
import tracemalloc

import numpy as np

from xanes_agent.data.library import load_bundled_library
from xanes_agent.models.training import TrainConfig, train_element


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--element", default="Cu")
    ap.add_argument("--n", type=int, default=1500, help="spectra (held-out rows added on top)")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    lib = load_bundled_library().where(element=a.element)
    train = np.flatnonzero(lib.split != "test")
    keep = np.random.default_rng(0).choice(train, min(a.n, len(train)), replace=False)
    lib = lib[np.sort(np.concatenate([keep, np.flatnonzero(lib.split == "test")]))]
    tracemalloc.start()
    t = time.perf_counter()
    m = train_element(lib, a.element, TrainConfig(n_estimators=a.trees, n_jobs=a.jobs), progress=False)
    wall = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nodes = sum(len(p.packed.feature) for p in m.properties.values())
    print(f"{a.element}: {len(keep)} training spectra (+{int((lib.split == 'test').sum())} held out), "
          f"3 properties x 10 seeds x {a.trees} trees, n_jobs={a.jobs}")
    print(f"  wall time          : {wall:8.1f} s")
    print(f"  peak Python memory : {peak / 1e6:8.1f} MB (tracemalloc)   max RSS {rss:8.1f} MB")
    print(f"  model size         : {nodes:,} tree nodes")
    for name, p in m.properties.items():
        print(f"  {name:20s} " + ", ".join(f"{k}={v:.3f}" for k, v in p.metrics.items() if isinstance(v, float)))


if __name__ == "__main__":
    main()
