"""Points-to-decision: how much of a uniform 0.5 eV scan each strategy needs to reach the full
scan's structural answer, on held-out spectra replayed by the simulator with counting noise.

Full scan: 0.5 eV steps from the tabulated edge - 20 eV to + 100 eV (241 points; FEFF places Cu
edges 10-25 eV above the tabulated 8979 eV). Every point of every strategy is one of these grid
points, read from one noise draw per sample, so strategies differ only in order. Decision = CN
class, distance within 0.01 A, charge label within 0.05 (an oxidation state: no unit) of the full
scan's; a strategy "reaches" it at the first point count from which its predictions stay within
those bounds for the rest of its run.

Strategies: the agent's (importance x uncertainty) and importance-only, both driven by the plan's own
policy (``AdaptivePolicy``: survey, edge and normalization passes, proposals, stop rules) with a real
``XANESAgent``, exactly as ``adaptive_xanes_scan`` and the queue suggester drive it; plain energy order,
random order, uniform coarse-to-fine (8, 4, 2, 1, 0.5 eV
passes), and bluesky's own ``adaptive_scan`` (slope-adaptive step, run on the simulator with a real
RunEngine; its points are not on the grid, and it reaches the decision or not within its own run).

    python benchmarks/points_to_decision.py [--element Cu] [--samples 60] [--out out/points_to_decision]
        [--strategies importance_uncertainty importance_only]   # the plan's own two only (quicker)
        [--early-updates 0]   # also the plan's stop without its early-stop rule, same models and draws
        [--undecided-updates 2 3]   # also with fewer agreeing updates before an undecided answer stops
        [--edge-halfwidth 4 3]   # also with narrower (or wider) fine passes around the edge, eV

Writes ``table.md``, a PNG and ``results.json``: the figures per strategy, and one record per sample
(its id, true CN, the full scan's CN, P(CN) and E0 in eV, and where, why and with what CN the plan's
policy stopped, with the new points each kind of pass measured up to the stop: survey, edge,
normalization, proposal), so a stop that differs from the full scan can be traced to its sample.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from xanes_agent.agent import ModelStore, XANESAgent
from xanes_agent.agent.policy import DEFAULT_EDGE_HALFWIDTH, AdaptivePolicy, Stop
from xanes_agent.agent.predictor import LivePredictor
from xanes_agent.agent.stopping import DEFAULT_STABILITY, agree, decision_of
from xanes_agent.data.library import load_bundled_library
from xanes_agent.foundation.edges import edge_energy
from xanes_agent.foundation.energies import range_energies
from xanes_agent.models.demo import ensure_demo_model
from xanes_agent.models.model import ElementModel
from xanes_agent.simulator import make_beamline, sample_from_library

# the decision tolerance (A, e) is the plan's own "answer stable" tolerance
TOL = {"mean_nn_distance": DEFAULT_STABILITY["distance"], "charge": DEFAULT_STABILITY["charge"]}


def decision(state):
    """The decision of a predictor state (CN, distance in A, charge), as the policy reads a report."""
    return decision_of({"predictions": state.predictions, "edge_located": state.edge_located})


def same(d, ref):
    return agree(d, ref, DEFAULT_STABILITY)


def policy_run(model, grid, mu, strategy, e_tab, policy_kw=None, rest=True):
    """Drive the plan's own policy (:class:`AdaptivePolicy`, the plan's defaults) with a real
    :class:`XANESAgent` on one noisy spectrum, each planned energy snapped to the nearest point of
    the 0.5 eV grid; after the policy stops, go on with the agent's proposals (then energy order)
    to the whole grid, so the point where the full-scan decision is reached can be found even
    where the plan stops before it (``rest=False``: end at the stop). ``policy_kw``: the policy's
    parameters where they differ from the plan's defaults (e.g. ``edge_step``, ``stability``).
    Returns (order, trace, stop, passes): trace = [(n_points, decision, coverage, P(CN))] after each
    step; stop = (n_points, reason); passes = {kind: new points} of the plan's passes up to its stop."""
    agent = XANESAgent(ModelStore(models={model.element: model}), strategy=strategy)
    agent.begin(model.element, model.edge, uid="points-to-decision")
    policy = AdaptivePolicy(e_tab, **(policy_kw or {}))
    taken = np.zeros(len(grid), bool)
    order, trace, passes = [], [], {}

    def take(energies, uid=None):
        new = []
        for e in np.atleast_1d(energies):
            i = int(np.argmin(np.abs(grid - e)))
            if abs(grid[i] - e) <= 0.5 and not taken[i]:
                taken[i] = True
                new.append(i)
        order.extend(new)
        if new:
            agent.ingest(grid[new], mu[new], uid=uid)
        rep = agent.report()
        cn = (rep.get("predictions") or {}).get("coordination_number")
        trace.append((len(order), decision_of(rep), rep.get("coverage", 0.0),
                      float(cn["probability"]) if cn and rep.get("edge_located") else None))

    stop = None
    while stop is None:
        action = policy.next(grid[order], mu[order], agent.report(), agent.suggest)
        if isinstance(action, Stop):
            stop = (len(order), action.reason)
            break
        for m in action:
            before = len(order)
            take(m.energies, m.uid)
            passes[m.kind] = passes.get(m.kind, 0) + len(order) - before
    while rest and not taken.all():  # beyond the plan's stop: the counterfactual rest of the scan
        before = len(order)
        props = agent.suggest(1)
        if props:
            take(range_energies(props[0]["start"], props[0]["stop"], props[0]["step"]), props[0]["uid"])
        if len(order) == before:  # window covered (or nothing proposable): the rest in energy order
            take(grid[np.flatnonzero(~taken)[:12]])
    agent.end()
    return np.array(order), trace, stop, passes


def distance_error(d, truth):
    """|predicted - true| mean neighbour distance (A) of a decision; NaN without one."""
    return abs(d[1] - truth) if d is not None and d[1] is not None and np.isfinite(truth) else np.nan


def fixed_orders(n, rng):
    coarse_to_fine, seen = [], set()
    for stride in (16, 8, 4, 2, 1):
        for i in range(0, n, stride):
            if i not in seen:
                seen.add(i)
                coarse_to_fine.append(i)
    return {"energy_order": np.arange(n), "random": rng.permutation(n), "coarse_to_fine": np.array(coarse_to_fine)}


def needed_points(trace, ref):
    """The first point count from which every later decision of ``trace`` is ``ref``, or None."""
    for i in range(len(trace)):
        if all(same(t[1], ref) for t in trace[i:]):
            return trace[i][0]
    return None


def evaluate(pred, energies, mu, order, checkpoints, ref):
    """(points needed or None, [(n_points, decision, coverage, P(CN))])."""
    trace = []
    for k in checkpoints:
        idx = np.sort(order[:k])
        st = pred.update(energies[idx], mu[idx])
        cn = st.predictions.get("coordination_number") if st.edge_located else None
        trace.append((k, decision(st), st.coverage_fraction, float(cn["probability"]) if cn else None))
    return needed_points(trace, ref), trace


def bluesky_adaptive(sample, seed, lo, hi):
    import bluesky.plans as bp
    from bluesky import RunEngine

    bl = make_beamline(sample, seed=seed, flux=1e6)
    ev = []
    RunEngine({})(bp.adaptive_scan([bl.det], bl.det.mu.name, bl.mono, lo, hi, 0.5, 5.0, 0.04, backstep=True),
                  lambda n, d: ev.append((d["data"][bl.mono.readback.name], d["data"][bl.det.mu.name]))
                  if n == "event" else None)
    return np.array(ev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--element", default="Cu", help="absorber of the held-out spectra (and of the model)")
    ap.add_argument("--model", default=None, help="a bundle of --element (default: the demo's, trained if needed)")
    ap.add_argument("--strategies", nargs="+", default=None, metavar="NAME",
                    help="only these (default: all: importance_uncertainty importance_only coarse_to_fine random "
                         "energy_order bluesky_adaptive_scan)")
    ap.add_argument("--out", default="out/points_to_decision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-coverage", type=float, nargs="+", default=[],
                    help="also run the agent's strategy to the plan's stop with these shares of the model window "
                         "required before a stable answer counts (the plan's default: 0.99)")
    ap.add_argument("--edge-step", type=float, nargs="+", default=[],
                    help="also run with these edge-pass steps, eV (the plan's default: 0.5)")
    ap.add_argument("--edge-halfwidth", type=float, nargs="+", default=[],
                    help="also run with edge passes of these half-widths, eV (the plan's default: "
                         f"{DEFAULT_EDGE_HALFWIDTH:g})")
    ap.add_argument("--early-updates", type=int, nargs="+", default=[],
                    help="also run with these agreeing updates for a stable stop before the window is covered "
                         f"(the plan's default: {DEFAULT_STABILITY['early_updates']}; 0: cover the window first)")
    ap.add_argument("--undecided-updates", type=int, nargs="+", default=[],
                    help="also run with these agreeing updates before an answer settled below the decision "
                         f"probability stops (the plan's default: {DEFAULT_STABILITY['undecided_updates']})")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.model is None:  # the demo's model (live preset), trained once and cached
        a.model = ensure_demo_model(Path(".cache/models"), a.element)
    model = ElementModel.load(a.model, expect_element=a.element)
    pred = LivePredictor(model)
    lib = load_bundled_library().where(element=a.element, split="test")
    lib = lib[np.isin(lib.labels["coordination_number"], (4, 5, 6))]
    rng = np.random.default_rng(a.seed)
    picks = rng.choice(len(lib), min(a.samples, len(lib)), replace=False)
    e_tab = edge_energy(a.element)
    grid = np.arange(e_tab - 20, e_tab + 100 + 1e-9, 0.5)
    n = len(grid)
    names = ["importance_uncertainty", "importance_only", "coarse_to_fine", "random", "energy_order",
             "bluesky_adaptive_scan"]
    if a.strategies:
        unknown = set(a.strategies) - set(names)
        if unknown:
            raise SystemExit(f"unknown strategies: {', '.join(sorted(unknown))}")
        names = [nm for nm in names if nm in a.strategies]
    needed = {k: [] for k in names}
    traces = {k: [] for k in names}
    truth_cn, repeat, full_right, full_derr = [], [], [], []
    records = []
    stops = {k: [] for k in names if k in ("importance_uncertainty", "importance_only")}
    # policy variants: the agent's strategy to the plan's stop only, with other stop/edge parameters
    variants = {}
    early_default, undecided_default = DEFAULT_STABILITY["early_updates"], DEFAULT_STABILITY["undecided_updates"]
    plan = (DEFAULT_STABILITY["coverage"], 0.5, DEFAULT_EDGE_HALFWIDTH, early_default,
            undecided_default)  # the plan's own settings: not a variant
    for setting in itertools.product(
            a.stop_coverage or [plan[0]], a.edge_step or [plan[1]], a.edge_halfwidth or [plan[2]],
            a.early_updates or [plan[3]], a.undecided_updates or [plan[4]]):
        if setting != plan:
            cov, step, half, early, undecided = setting
            variants[f"coverage {cov:g}, edge pass +-{half:g} eV at {step:g} eV, "
                     f"early updates {early}, undecided updates {undecided}"] = {
                "stability": {"coverage": cov, "early_updates": early, "undecided_updates": undecided},
                "edge_step": step, "edge_halfwidth": half}
    variant_stops = {k: [] for k in variants}
    for j, i in enumerate(picks):
        sample = sample_from_library(lib, sample_id=str(lib.ids[i]))
        bl = make_beamline(sample, seed=a.seed + j, flux=1e6)
        i0, it = bl.det.expected_counts(grid)
        r = np.random.default_rng(a.seed + 1000 + j)
        mu = np.log(r.poisson(i0) / r.poisson(it))
        full_state = pred.update(grid, mu)
        ref = decision(full_state)
        if ref is None:
            continue
        # one record per sample, so a difference between the stop and the full scan can be traced
        record = {"id": str(sample.id), "true_cn": float(sample.labels["coordination_number"]), "full_cn": ref[0],
                  "full_cn_probability": float(full_state.predictions["coordination_number"]["probability"]),
                  "full_e0": float(full_state.e0)}
        records.append(record)
        # the ceiling: does a second full scan (another noise draw) give the same decision?
        r2 = np.random.default_rng(a.seed + 2000 + j)
        repeat.append(same(decision(pred.update(grid, np.log(r2.poisson(i0) / r2.poisson(it)))), ref))
        truth_cn.append(sample.labels["coordination_number"])
        full_right.append(ref[0] == sample.labels["coordination_number"])
        true_d = sample.labels["mean_nn_distance"]
        full_derr.append(distance_error(ref, true_d))
        checkpoints_fixed = list(range(3, n + 1, 3)) + ([n] if n % 3 else [])
        for name in [nm for nm in names if nm in stops]:
            order, tr, (k_stop, reason), passes = policy_run(model, grid, mu, name, e_tab)
            needed[name].append(needed_points(tr, ref))
            traces[name].append(tr)
            # where the plan's own policy stopped, and with what answer
            at_stop = [t for t in tr if t[0] <= k_stop][-1]
            stops[name].append((k_stop / n, same(at_stop[1], ref), at_stop[1] is not None and
                                at_stop[1][0] == sample.labels["coordination_number"], reason.split(":")[0],
                                distance_error(at_stop[1], true_d)))
            record[name] = {"stop_fraction": k_stop / n, "stop_cn": None if at_stop[1] is None else at_stop[1][0],
                            "stop_cn_probability": at_stop[3], "stop_reason": reason, "points_by_pass": passes}
        for vname, kw in variants.items():
            _, tr, (k_stop, reason), _ = policy_run(model, grid, mu, "importance_uncertainty", e_tab, kw, rest=False)
            d = tr[-1][1] if tr else None
            variant_stops[vname].append((k_stop / n, same(d, ref), d is not None and
                                         d[0] == sample.labels["coordination_number"], reason.split(":")[0],
                                         distance_error(d, true_d)))
        for name, order in fixed_orders(n, np.random.default_rng(a.seed + j)).items():
            if name not in names:
                continue
            k, tr = evaluate(pred, grid, mu, order, checkpoints_fixed, ref)
            needed[name].append(k)
            traces[name].append(tr)
        if "bluesky_adaptive_scan" in names:
            ev = bluesky_adaptive(sample, a.seed + j, grid[0], grid[-1])
            cps = list(range(6, len(ev) + 1, 6)) + [len(ev)]
            k, tr = evaluate(pred, ev[:, 0], ev[:, 1], np.arange(len(ev)), cps, ref)
            needed["bluesky_adaptive_scan"].append(k)
            traces["bluesky_adaptive_scan"].append(tr)
        print(f"sample {j + 1}/{len(picks)} {sample.id}: " +
              ", ".join(f"{nm}={(needed[nm][-1] or float('nan')) / n:.0%}" for nm in names), flush=True)
    truth_cn = np.array(truth_cn)
    budgets = np.linspace(0.1, 1.0, 10)
    rows, acc_curves, reached_curves = [], {}, {}
    for name in names:
        fr = np.array([(k if k is not None else np.nan) / n for k in needed[name]])
        ok = np.isfinite(fr)
        # fraction needed counts a miss as 100 % (it only gets the answer from the full scan, if at all)
        frc = np.where(ok, fr, 1.0)
        acc = []
        for b in budgets:
            hits = []
            for tr, t in zip(traces[name], truth_cn):
                d = [t[1] for t in tr if t[0] <= b * n]
                hits.append(bool(d) and d[-1] is not None and d[-1][0] == t)
            acc.append(float(np.mean(hits)))
        acc_curves[name] = acc
        # the share of samples that have (and keep) the full-scan decision by each budget
        reached_curves[name] = [float(np.mean(frc <= b + 1e-9)) for b in budgets]
        rows.append((name, np.median(frc), np.percentile(frc, 25), np.percentile(frc, 75), ok.mean(), acc))
    lines = [f"{len(truth_cn)} held-out {a.element} spectra, full scan {n} points at 0.5 eV; decision = same CN, "
             f"distance within {TOL['mean_nn_distance']} A, charge label within {TOL['charge']}; a second full scan "
             f"(another noise draw) reproduces it for {np.mean(repeat):.0%} of samples",
             "| strategy | median fraction | Q1 | Q3 | reached | CN accuracy @20% | @30% | @50% | @100% |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, med, q1, q3, reach, acc in rows:
        lines.append(f"| {name} | {med:.0%} | {q1:.0%} | {q3:.0%} | {reach:.0%} | {acc[1]:.2f} | {acc[2]:.2f} | "
                     f"{acc[4]:.2f} | {acc[9]:.2f} |")
    lines += ["", "Per budget (% of the full scan's points): share of samples at the full-scan decision / CN accuracy "
              "against ground truth", "| strategy | " + " | ".join(f"{b:.0%}" for b in budgets) + " |",
              "|---|" + "---|" * len(budgets)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r:.2f} / {c:.2f}" for r, c in
                                                 zip(reached_curves[name], acc_curves[name])) + " |")
    lines += ["", "Where the plan's own policy (AdaptivePolicy, the plan's defaults) ends the scan:",
              "| strategy | median fraction at stop | Q1 | Q3 | full-scan decision at stop | "
              "CN accuracy at stop | distance MAE vs truth at stop (A) | stop reasons |",
              "|---|---|---|---|---|---|---|---|"]
    full_acc = float(np.mean(full_right))
    for name, st_ in list(stops.items()) + [(f"importance_uncertainty, {k}", v) for k, v in variant_stops.items()]:
        f = np.array([x[0] for x in st_])
        lines.append(f"| {name} | {np.median(f):.0%} | {np.percentile(f, 25):.0%} | {np.percentile(f, 75):.0%} | "
                     f"{np.mean([x[1] for x in st_]):.0%} | {np.mean([x[2] for x in st_]):.2f} | "
                     f"{np.nanmean([x[4] for x in st_]):.3f} | " +
                     ", ".join(f"{r} {c}" for r, c in zip(*np.unique([x[3] for x in st_], return_counts=True))) + " |")
    lines.append(f"(full scan: CN accuracy {full_acc:.2f}, distance MAE vs truth {np.nanmean(full_derr):.3f} A)")
    for name in stops:  # where the points of the plan's own stops went
        by_pass = [rec[name]["points_by_pass"] for rec in records if name in rec]
        kinds = ("survey", "edge", "normalization", "proposal")
        lines.append(f"{name}: mean new points per pass up to the stop: " + ", ".join(
            f"{k} {np.mean([p.get(k, 0) for p in by_pass]):.1f}" for k in kinds))
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"needed": needed, "n_full": n, "budgets": budgets.tolist(),
                                                  "cn_accuracy": acc_curves,
                                                  "reached_by_budget": reached_curves,
                                                  "repeatability": float(np.mean(repeat)),
                                                  "stops": {**stops, **variant_stops},
                                                  "samples": records,
                                                  "full_scan": {"cn_accuracy": full_acc,
                                                                "distance_mae": float(np.nanmean(full_derr))}},
                                                 indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for name in names:
        axes[0].plot(budgets * 100, acc_curves[name], "o-", label=name)
        fr = np.sort(np.array([(k if k is not None else np.inf) / n for k in needed[name]]))
        axes[1].step(np.concatenate([[0], fr * 100]), np.arange(len(fr) + 1) / len(fr), where="post", label=name)
    axes[0].set_xlabel("points measured (% of the 0.5 eV scan)")
    axes[0].set_ylabel("CN accuracy vs ground truth")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("points needed to reach the full-scan decision (%)")
    axes[1].set_ylabel("fraction of samples")
    axes[1].set_xlim(0, 100)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "points_to_decision.png", dpi=110)
    print(f"wrote {out / 'table.md'}, {out / 'points_to_decision.png'}")


if __name__ == "__main__":
    main()
