"""Per-event update latency of the agent's model evaluation: fused fast path vs plain scikit-learn.

One row (the spectrum so far), all properties x all seeds, one thread. Also the full update
(normalize + grid + featurize + predict) and sustained events/s through event_page batches.

    python benchmarks/agent_latency.py [--trees 100] [--n 1000] [--min-samples-leaf 5]

``--min-samples-leaf 5`` is what ``xanes-agent train --live`` uses (smaller trees).
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from xanes_agent.data.library import load_bundled_library  # noqa: E402
from xanes_agent.models.ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor  # noqa: E402
from xanes_agent.models.fast import HAVE_NUMBA, FusedForests  # noqa: E402
from xanes_agent.models.features import spectra_to_grid  # noqa: E402
from xanes_agent.models.packed import PackedForests  # noqa: E402
from xanes_agent.models.training import augment, charge_label  # noqa: E402


def pct(ts):
    ts = np.array(ts) * 1e3
    return np.percentile(ts, 50), np.percentile(ts, 99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--min-samples-leaf", type=int, default=1)
    a = ap.parse_args()
    lib = load_bundled_library().where(element="Cu", split="train")
    lib = lib[np.random.default_rng(0).choice(len(lib), a.n, replace=False)]
    from xanes_agent.models.features import make_featurizer

    feat = make_featurizer("polynomial")
    Xg, e0 = spectra_to_grid(lib.energy, lib.mu)
    ok = np.isfinite(e0)
    Xa, src = augment(Xg[ok], 2, np.random.default_rng(0))
    F = feat.transform(Xa)
    cn = lib.labels["coordination_number"][ok][src]
    m = np.isin(cn, (4, 5, 6))
    leaf = a.min_samples_leaf
    ests = {
        "coordination_number": SeedEnsembleClassifier(n_estimators=a.trees, n_jobs=-1, min_samples_leaf=leaf).fit(
            F[m], cn[m].astype(int)),
        "mean_nn_distance": SeedEnsembleRegressor(n_estimators=a.trees, n_jobs=-1, min_samples_leaf=leaf).fit(
            F[np.isfinite(lib.labels["mean_nn_distance"][ok][src])],
            lib.labels["mean_nn_distance"][ok][src][np.isfinite(lib.labels["mean_nn_distance"][ok][src])]),
    }
    q = lib.labels[charge_label(lib)][ok][src]
    has_q = np.isfinite(q)
    ests["charge"] = SeedEnsembleRegressor(n_estimators=a.trees, n_jobs=-1, min_samples_leaf=leaf).fit(
        F[has_q], q[has_q])
    fused = FusedForests.from_packed({k: PackedForests.from_sklearn(e.estimators_) for k, e in ests.items()})
    fused.warm_up(F.shape[1])
    rows = feat.transform(Xg[ok][:50])
    rows[::2, 80:] = np.nan  # half of them partial spectra
    for e in ests.values():
        for f in e.estimators_:
            f.n_jobs = 1

    def sklearn_one(x):
        return {k: (e.predict_proba_per_seed(x) if k == "coordination_number" else e.predict_per_seed(x))
                for k, e in ests.items()}

    res = {}
    engines = (["numba"] if HAVE_NUMBA else []) + ["numpy"]
    for name, fn in [(f"fused/{eng}", (lambda x, eng=eng: fused.per_property(x, eng))) for eng in engines] + \
            [("scikit-learn", sklearn_one)]:
        reps = a.reps if name != "scikit-learn" else max(20, a.reps // 10)
        ts = []
        for i in range(reps):
            x = rows[i % len(rows)][None, :]
            t = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t)
        res[name] = pct(ts)
    # exactness on these rows
    fu = fused.per_property(rows)
    sk = sklearn_one(rows)
    err = max(np.abs(fu["coordination_number"] - sk["coordination_number"]).max(),
              np.abs(fu["mean_nn_distance"][:, :, 0] - sk["mean_nn_distance"]).max())
    nodes = len(fused.feature)
    print(f"3 properties x 10 seeds x {a.trees} trees = {len(fused.roots)} trees, {nodes:,} nodes; "
          f"min_samples_leaf {leaf}; trained on {len(F)} rows (augmented); one row per call, one thread; "
          f"max |fused - sklearn| = {err:.1e}")
    base = res["scikit-learn"][0]
    for name, (p50, p99) in res.items():
        print(f"  {name:14s} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   speed-up vs sklearn {base / p50:7.1f}x")
    # sustained ingestion through the agent, event_page batches of 10 points
    from bluesky import RunEngine  # noqa: F401 - only to mirror a real session's imports
    from event_model import compose_run

    from xanes_agent.agent import ModelStore, XANESAgent
    from xanes_agent.models.model import ElementModel
    from xanes_agent.models.training import TrainConfig, train_element

    cfg = TrainConfig(n_estimators=a.trees, n_jobs=-1, min_samples_leaf=leaf)
    small = train_element(lib[:400], "Cu", cfg, progress=False)
    small = ElementModel.load(small.save("/tmp/_bench_model.npz"))
    agent = XANESAgent(ModelStore(models={"Cu": small}))
    s = lib.spectrum(0)
    bundle = compose_run(metadata={"element": "Cu", "edge": "K", "xas": {"energy_field": "E", "mu_field": "mu"}})
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "E": {"dtype": "number", "shape": [], "source": "b", "units": "eV"},
        "mu": {"dtype": "number", "shape": [], "source": "b"}})
    agent("start", bundle.start_doc)
    agent("descriptor", desc.descriptor_doc)
    e = np.linspace(s.energy[0], s.energy[-1], 1000)
    mu = np.interp(e, s.energy, s.mu)
    t = time.perf_counter()
    for k in range(0, 1000, 10):
        n = 10
        agent("event_page", desc.compose_event_page(
            data={"E": list(e[k:k + n]), "mu": list(mu[k:k + n])}, timestamps={"E": [0.0] * n, "mu": [0.0] * n},
            seq_num=list(range(k + 1, k + n + 1))))
    dt = time.perf_counter() - t
    upd = [h["update_seconds"] for h in agent.snapshot().history]
    print(f"  sustained: 1000 events in 100 event_pages -> {1000 / dt:,.0f} events/s "
          f"({100 / dt:,.0f} full updates/s; full update p50 {np.median(upd) * 1e3:.2f} ms incl. "
          f"normalize+grid+featurize; model of {sum(len(p.packed.feature) for p in small.properties.values()):,} "
          "nodes)")


if __name__ == "__main__":
    main()
