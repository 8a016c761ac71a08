"""Subcommands of the models, simulator and agent rooms, registered on the ``xanes-agent`` parser."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .foundation.properties import CHARGE, DISTANCE, PROPERTIES, REGRESSORS, charge_title
from .cli import (_EXTRA_COMMANDS, CLIError, _element, _existing_file, _non_negative_int, _positive_float, _positive_int,
                  cluster_client, scheduler_arg)


def _load_collection(a: argparse.Namespace):
    """The training/evaluation data: ``--data`` files (MP JSON, xmu.dat) or a library (bundled default)."""
    from .data import SpectrumCollection, read_spectrum
    from .data.library import load_bundled_library
    from .data.readers import read_library

    if getattr(a, "data", None):
        spectra = [read_spectrum(p) for p in a.data]
        return SpectrumCollection.from_spectra(spectra, source="user")
    if getattr(a, "library", None):
        return read_library(a.library)
    return load_bundled_library()


def model_path(out: Path, element: str, featurization: str, normalization: str) -> Path:
    return Path(out) / f"{element}-{featurization}-{normalization}.npz"


def cmd_train(a: argparse.Namespace) -> int:
    from .cluster import joblib_on

    coll = _load_collection(a)
    if a.source:
        sources = sorted(set(coll.source.tolist()))
        coll = coll.where(source=a.source)
        if not len(coll):
            raise CLIError(f"--source {a.source}: no such source in the data (have: {', '.join(sources)})")
    elements = a.elements or sorted(set(coll.element.tolist()))
    for el in elements:
        if el not in set(coll.element.tolist()):
            raise CLIError(f"no spectra of {el} in the data (have: {', '.join(sorted(set(coll.element.tolist())))})")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    with cluster_client(a.scheduler) as client:
        with (joblib_on(client) if client is not None else contextlib.nullcontext()):
            _train_all(a, coll, elements)
    return 0


def _train_all(a: argparse.Namespace, coll: Any, elements: list[str]) -> None:
    from .models.training import TrainConfig, live_config, train_element

    for el in elements:
        for feat in a.featurization:
            kw = dict(featurization=feat, normalization=a.normalization, n_seeds=a.seeds,
                      n_estimators=a.trees, split_seed=a.seed, n_jobs=a.jobs,
                      calibration_folds=a.calibration_folds, realism_copies=a.experiment_like)
            cfg = live_config(**kw) if a.live else TrainConfig(**kw)
            m = train_element(coll, el, cfg, progress=not a.quiet)
            path = m.save(model_path(a.out, el, feat, a.normalization))
            print(f"{el} {feat}: wrote {path}")
            for name, pm in m.properties.items():
                print(f"  {name:20s} ({pm.label}): " + ", ".join(
                    f"{k}={v:.3f}" for k, v in pm.metrics.items() if isinstance(v, float)))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .models.features import spectra_to_grid
    from .models.model import ElementModel
    from .models.training import CN_CLASSES, evaluate_property

    m = ElementModel.load(a.model)
    coll = _load_collection(a).where(element=m.element)
    if a.split != "all":
        coll = coll.where(split=a.split)
    if a.source:
        coll = coll.where(source=a.source)
    if not len(coll):
        raise CLIError(f"no {m.element} spectra in the chosen data/split")
    src, counts = np.unique(coll.source, return_counts=True)
    print(f"{m.element}, split {a.split}: {len(coll)} spectra from " + ", ".join(f"{s_} ({c})" for s_, c in zip(src, counts))
          + ("" if len(src) == 1 or a.source else " (pooled; --source SOURCE for one)"))
    X, e0 = spectra_to_grid(coll.energy, coll.mu, m.grid, m.normalization)
    F = m.featurize(X)
    results = {}
    for name, pm in m.properties.items():
        y = coll.labels[pm.label]
        ok = np.isfinite(y) & np.isfinite(e0)
        if pm.kind == "classifier":
            ok &= np.isin(y, CN_CLASSES)
        if ok.sum() < 2:
            continue
        results[name] = evaluate_property(pm, F[ok], y[ok])
        print(f"{name:20s} ({pm.label}, n={ok.sum()}): " + ", ".join(
            f"{k}={v:.3f}" for k, v in results[name].items() if isinstance(v, float)))
        if a.permutation:
            from .models.training import permutation_importance

            mean, std = permutation_importance(pm, F[ok], y[ok], n_repeats=a.permutation)
            top = np.argsort(mean)[::-1][:10]
            results[name]["permutation_importance_top10"] = {
                str(m.feature_names[i]): [float(mean[i]), float(std[i])] for i in top}
            impurity = np.argsort(pm.importances)[::-1][:10]
            # whole names: the energy range is what a feature means (pointwise names are all "mu[...]")
            print(f"  permutation top-10: {', '.join(str(m.feature_names[i]) for i in top)}")
            print(f"  impurity    top-10: {', '.join(str(m.feature_names[i]) for i in impurity)}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .models import report
    from .models.features import spectra_to_grid
    from .models.model import ElementModel

    paths = sorted(Path(a.models).glob("*.npz"))
    if not paths:
        raise CLIError(f"no model bundles (*.npz) in {a.models}")
    models = [ElementModel.load(p) for p in paths]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    coll = _load_collection(a)
    if a.source:
        sources = sorted(set(coll.source.tolist()))
        coll = coll.where(source=a.source)
        if not len(coll):
            raise CLIError(f"--source {a.source}: no such source in the data (have: {', '.join(sources)})")
    written = [report.performance_figure(models, out / "performance.png"),
               report.coverage_figure(models, out / "coverage.png")]
    for el in sorted({m.element for m in models}):
        poly = next((m for m in models if m.element == el and m.featurization == "polynomial"), None)
        point = next((m for m in models if m.element == el and m.featurization == "pointwise"), None)
        ref = poly or point
        test = coll.where(element=el, split="test")
        if not len(test):
            continue
        X, _ = spectra_to_grid(test.energy, test.mu, ref.grid, ref.normalization)
        preds = ref.predict_grid(X)
        truth = {n: test.labels[pm.label] for n, pm in ref.properties.items()}
        ok = np.all([np.isfinite(truth[n]) for n in truth if n != "coordination_number"], axis=0)
        written.append(report.parity_figure(
            ref, {k: v[ok] for k, v in truth.items()},
            {k: {kk: vv[ok] for kk, vv in v.items() if kk != "classes"} for k, v in preds.items()},
            out / f"parity_{el}.png", source=", ".join(sorted(set(test.source.tolist())))))
        wl = ref.featurize(X)[:, -1] if ref.featurization == "polynomial" else None
        written.append(report.importance_figure(poly, point, wl, out / f"importance_{el}.png"))
    (out / "summary.md").write_text("# xanes-agent model report\n\n" + report.metrics_table(models) + "\n")
    written.append(out / "summary.md")
    print(report.metrics_table(models))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .models.model import ElementModel

    m = ElementModel.load(a.model)
    print(f"{a.model}: {m.element} {m.edge}-edge, {m.featurization} features ({len(m.feature_names)}), "
          f"{m.normalization} normalization, grid {m.grid.start:+g}..{m.grid.stop:+g} eV x {m.grid.n}")
    print(f"trained on {m.n_spectra} spectra from {', '.join(m.sources)}; data sha256 {m.training_data_hash[:16]}...")
    print(f"versions: {m.versions}")
    for name, pm in m.properties.items():
        print(f"  {name} ({pm.label}, {pm.kind}, {pm.packed.n_forests} seeds, {len(pm.packed.roots)} trees, "
              f"n_train={pm.n_train}, n_test={pm.n_test})")
        print("    " + json.dumps(pm.metrics))
    cal = m.calibration
    if cal is None:
        print("uncertainty: seed spread only (not calibrated: a predictive uncertainty it is not)")
    else:
        print(f"uncertainty: calibrated out of family ({cal.method.get('folds')} folds by "
              f"{cal.method.get('groups')}, {cal.method.get('n_held_out_spectra')} spectra): "
              f"{cal.method.get('interval')}; domain flag above score {cal.domain.threshold:.2f}; CN probability "
              f"{cal.method.get('cn_probability', 'calibrated (isotonic map)')}")
        for name, q in cal.quantiles.items():
            print(f"    {name}: 68/90 % interval scale per coverage band (0-50, 50-80, 80-100 %): "
                  + "; ".join(f"{a:.3g}/{b:.3g}" for a, b in q))
    return 0


def register_models(sub: argparse._SubParsersAction) -> None:
    from .models.features import FEATURIZATIONS
    from .foundation.normalization import NORMALIZATIONS

    def data_args(p):
        p.add_argument("--library", type=_existing_file, default=None, help="library .npz (default: bundled)")
        p.add_argument("--data", nargs="+", type=_existing_file, default=None,
                       help="user spectra instead of a library (Materials Project JSON with labels, xmu.dat)")
        p.add_argument("--source", default=None, help="only this source (e.g. feff10-project, omnixas-feff9)")

    t = sub.add_parser("train", help="train seed-ensemble forests per element")
    data_args(t)
    t.add_argument("--elements", nargs="+", type=_element, default=None)
    t.add_argument("--featurization", nargs="+", choices=FEATURIZATIONS, default=["polynomial"])
    t.add_argument("--normalization", choices=NORMALIZATIONS, default="post_edge")
    t.add_argument("--seeds", type=_positive_int, default=10)
    t.add_argument("--trees", type=_positive_int, default=100)
    t.add_argument("--seed", type=int, default=0, help="split and forest seed (recorded in the bundle)")
    t.add_argument("--live", action="store_true",
                   help="train for measured spectra (noise and E0-jitter copies, min_samples_leaf=5): "
                        "the models the agent should use at a beamline")
    t.add_argument("--jobs", type=int, default=None, help="joblib workers (-1: all cores)")
    t.add_argument("--experiment-like", type=_non_negative_int, default=0, metavar="N",
                   help="add N experiment-like copies of each training spectrum (0.5-3 eV broadening, +-1 eV E0, "
                        "3 %% normalization, noise: xanes_agent.models.realism)")
    t.add_argument("--calibration-folds", type=_non_negative_int, default=5, metavar="K",
                   help="calibrate intervals, CN probability and the domain flag on K folds by parent structure "
                        "(0: seed spread only, not a predictive uncertainty)")
    t.add_argument("--out", default="models")
    t.add_argument("--quiet", action="store_true")
    scheduler_arg(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a model bundle on a split of the data")
    e.add_argument("model", type=_existing_file)
    data_args(e)
    e.add_argument("--split", choices=["test", "train", "all"], default="test")
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    e.add_argument("--permutation", type=int, default=0, metavar="REPEATS",
                   help="also compute permutation importance on the split with this many repeats")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("report", help="PNG figures and a markdown summary of trained models")
    r.add_argument("--models", default="models")
    data_args(r)
    r.add_argument("--out", default="report")
    r.set_defaults(func=cmd_report)

    i = sub.add_parser("info", help="describe a model bundle")
    i.add_argument("model", type=_existing_file)
    i.set_defaults(func=cmd_info)


_EXTRA_COMMANDS.append(register_models)


# -- simulator ------------------------------------------------------------------------------------------

def choose_sample(a: argparse.Namespace):
    """The sample for simulator commands: a file, a library id, or random by element and label."""
    from .simulator import sample_from_file, sample_from_library

    if getattr(a, "file", None):
        return sample_from_file(a.file, element=a.element)
    lib = _load_collection(a)
    labels = {"coordination_number": float(a.cn)} if getattr(a, "cn", None) else {}
    try:
        return sample_from_library(lib, sample_id=a.sample_id, element=a.element, split=a.split, rng=a.seed, **labels)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def cmd_simulate(a: argparse.Namespace) -> int:
    import bluesky.plans as bp
    from bluesky import RunEngine

    from .documents import JSONLWriter
    from .foundation.normalization import find_e0
    from .simulator import make_beamline

    sample = choose_sample(a)
    bl = make_beamline(sample, seed=a.seed, flux=a.flux, dwell_time=a.dwell, include_truth=a.truth)
    e0 = find_e0(sample.energy, sample.mu)
    RE = RunEngine({})
    writer = JSONLWriter(a.out)
    events: list[tuple[float, float]] = []

    def collect(name, doc):
        if name == "event":
            events.append((doc["data"][bl.energy_field], doc["data"][bl.mu_field]))

    try:
        RE(bp.scan([bl.det], bl.mono, e0 + a.start, e0 + a.stop, a.points), [writer, collect], **bl.md)
    finally:
        writer.close()
    print(f"sample {sample.id} ({sample.element} {sample.edge}, labels {sample.labels}); "
          f"{len(events)} points written to {a.out}")
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        e, mu = np.array(events).T
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(e, mu, "o", ms=3, label="measured ln(i0/it)")
        ax.plot(e, bl.det.background + bl.det.edge_step * sample.mu_at(e), "k-", lw=1, label="ground truth")
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("mu (ln(i0/it))")
        ax.set_title(f"simulated scan: {sample.id}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"wrote {a.png}")
    return 0


def sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--element", type=_element, default="Cu")
    p.add_argument("--sample-id", default=None, help="library id of the sample")
    p.add_argument("--cn", type=int, choices=[4, 5, 6], default=None, help="random sample with this CN")
    p.add_argument("--split", default="test", help="library split to draw from (default: held-out test)")
    p.add_argument("--file", type=_existing_file, default=None, help="xmu.dat / MP JSON / two-column file")
    p.add_argument("--library", type=_existing_file, default=None)
    p.add_argument("--source", default=None)
    p.add_argument("--seed", type=int, default=0, help="sample choice and counting-noise seed")
    p.add_argument("--flux", type=_positive_float, default=1e6, help="incident photons per second")
    p.add_argument("--dwell", type=_positive_float, default=1.0, help="seconds per point")
    p.add_argument("--truth", action="store_true", help="put the sample's true labels in the start document")


def register_simulator(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("simulate", help="scan a simulated sample; write documents (JSONL) and a PNG")
    sample_args(s)
    s.add_argument("--start", type=float, default=-20.0, help="eV relative to the sample's E0")
    s.add_argument("--stop", type=float, default=50.0, help="eV relative to the sample's E0")
    s.add_argument("--points", type=_positive_int, default=141)
    s.add_argument("--out", default="run.jsonl")
    s.add_argument("--png", default=None)
    s.set_defaults(func=cmd_simulate)


_EXTRA_COMMANDS.append(register_simulator)


# -- agent ----------------------------------------------------------------------------------------------

def _store(a: argparse.Namespace):
    from .agent import ModelStore

    folder = Path(a.models)
    if not folder.is_dir():
        raise CLIError(f"model folder not found: {folder} (train one with 'xanes-agent train')")
    return ModelStore(folder, normalization=getattr(a, "normalization", None))


def _print_report(rep: dict) -> None:
    preds = rep.get("predictions") or {}
    line = [f"run {str(rep.get('raw_run_uid', '?'))[:8]} {rep.get('element', '?')}: {rep.get('n_points', 0)} points"]
    if "coordination_number" in preds:
        p = preds["coordination_number"]
        line.append(f"CN {int(p['prediction'])} (p={p['probability']:.2f})")
    for name in REGRESSORS:  # an oxidation state has no unit; "e" only for a charge that is one
        if name in preds:
            unit = PROPERTIES[name].unit_for(rep.get("charge_label") if name == CHARGE else None, display=True)
            line.append(f"{name} {preds[name]['prediction']:.3f}±{preds[name]['std']:.3f} {unit}".rstrip())
    if rep.get("n_dropped"):
        line.append(f"{rep['n_dropped']} non-finite readings dropped")
    if rep.get("n_rejected"):
        line.append(f"{rep['n_rejected']} impossible readings rejected")
    if rep.get("in_domain") is False:
        line.append(f"OUT OF DOMAIN (score {rep['domain_score']:.2f}): unlike the training spectra, treat with care")
    print(", ".join(line))


def _format_prediction(rec: dict) -> list[str]:
    """The terminal lines of one ``predict`` record."""
    head = f"{rec['name']}  [{rec['format']}]  {rec['element']} {rec['edge']}-edge"
    head += f" ({rec['element_from']})" if rec.get("element_from") and rec["element_from"] != "given" else ""
    lines = [head + f"  {rec['signal']}"]
    e0 = f"E0 {rec['e0']:.1f} eV, " if rec.get("e0") else ""
    lines.append(f"  {rec['n_points']} points {rec['energy_range'][0]:.0f}-{rec['energy_range'][1]:.0f} eV, {e0}"
                 f"model window covered {100 * rec['coverage']:.0f} %")
    for name, prop in PROPERTIES.items():
        p = rec["predictions"].get(name)
        if p is None:
            continue
        label = charge_title(rec.get("charge_label")) if name == CHARGE else prop.title
        if prop.kind == "classifier":
            forest = max(p["raw_proba"]) if "raw_proba" in p else None  # before calibration
            raw = f" (forests {forest:.2f})" if forest is not None and abs(forest - p["probability"]) > 5e-3 else ""
            lines.append(f"  {label:<20s} {int(p['prediction']):d}        P = {p['probability']:.2f}{raw}")
            continue
        unit = prop.unit_for(rec.get("charge_label") if name == CHARGE else None, display=True)
        fmt = ".3f" if name == DISTANCE else ".2f"
        iv = "".join(f"   {lvl} %: [{p[f'interval{lvl}'][0]:{fmt}}, {p[f'interval{lvl}'][1]:{fmt}}]"
                     for lvl in (68, 90) if f"interval{lvl}" in p)
        if not iv:  # a bundle without calibration: only the seed spread, and it says so
            iv = f"   +- {p['std']:{fmt}} (seed spread, not calibrated)"
        lines.append(f"  {label:<20s} {p['prediction']:{fmt}} {unit:<2s}{iv}")
    if "in_domain" in rec:
        lines.append("  domain: " + ("in domain" if rec["in_domain"] else
                                      "OUT OF DOMAIN: unlike the training spectra, treat with care")
                     + f" (score {rec['domain_score']:.2f})")
    for n in rec.get("notes", []):
        lines.append(f"  note: {n}")
    return lines


def _prediction_png(rec: dict, ms, sig, model, path: Path) -> None:
    """Measured mu with E0, the model window and the predictions written on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mu = ms.mu(sig)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    ax.plot(ms.energy, mu, ".-", ms=3, lw=0.8, color="k", label=f"mu ({rec['signal']})")
    if rec.get("e0"):
        e0 = rec["e0"]
        ax.axvspan(e0 + model.grid.start, e0 + model.grid.stop, color="tab:blue", alpha=0.12,
                   label=f"model window E0{model.grid.start:+g}..{model.grid.stop:+g} eV")
        ax.axvline(e0, color="tab:red", lw=1, label=f"E0 {e0:.1f} eV")
    text = "\n".join(line.strip() for line in _format_prediction(rec)[2:] if not line.strip().startswith("note"))
    ax.text(0.98, 0.04, text, transform=ax.transAxes, ha="right", va="bottom", multialignment="left",
            fontsize=7.5, family="monospace",
            bbox=dict(facecolor="white", alpha=0.85, edgecolor="0.7"))
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("mu (as measured)")
    flag = "" if rec.get("in_domain", True) else "  [OUT OF DOMAIN]"
    ax.set_title(f"{rec['name']}: {rec['element']} {rec['edge']}-edge, {rec['format']}{flag}", fontsize=10)
    ax.legend(loc="upper left", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_predict(a: argparse.Namespace) -> int:
    """Predictions on measured spectra from files (XDI, Athena .prj, column files)."""
    from .agent import ModelStore
    from .agent.offline import predict_measured
    from .data.measured import MeasuredFileError, read_measured

    signal = {k: v for k, v in {"mode": a.mode, "mu": a.mu, "i0": a.i0, "it": a.it, "iff": a.if_}.items()
              if v is not None}
    demo_models = a.models is None
    store = ModelStore(Path(a.models or ".cache/models"))
    if not demo_models and not Path(a.models).is_dir():
        raise CLIError(f"model folder not found: {a.models}")
    records, failed, prepared = [], 0, set()
    for path in a.files:
        try:
            spectra = read_measured(path, energy_column=a.energy)
        except (MeasuredFileError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for ms in spectra:
            try:
                if demo_models:  # the demo's bundled-data model for this element, trained once
                    from .agent.offline import prepare
                    from .foundation.edges import ELEMENTS

                    el = prepare(ms, a.element, signal).element
                    if el in ELEMENTS and el not in prepared:
                        ensure_demo_model(store.folder, el, quiet=a.json)
                        prepared.add(el)
                rec = predict_measured(ms, store, element=a.element, edge=a.edge, signal=signal)
            except ValueError as exc:
                print(f"error: {ms.name}: {exc}" if ms.name not in str(exc) else f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            records.append(rec)
            if not a.json:
                print("\n".join(_format_prediction(rec)))
            if a.png:
                out = Path(a.png)
                out.mkdir(parents=True, exist_ok=True)
                stem = re.sub(r"[^\w.-]+", "_", rec["name"])
                sig, _ = ms.signal(**signal)
                _prediction_png(rec, ms, sig, store.predictor(rec["element"]).model, out / f"{stem}.png")
                rec["png"] = str(out / f"{stem}.png")
                if not a.json:
                    print(f"  figure: {rec['png']}")
    if a.json:
        print(json.dumps(records, indent=1, default=float))
    if not records:
        raise CLIError("no spectrum could be predicted")
    return 1 if failed else 0


def _run_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The agent's keyword arguments from the run-metadata flags that were given."""
    pairs = {"element": a.element, "edge": a.edge, "energy_field": a.energy_field, "mu_field": a.mu_field,
             "i0_field": a.i0_field, "it_field": a.it_field, "if_field": a.if_field, "mode": a.mode}
    return {k: v for k, v in pairs.items() if v is not None}


def cmd_serve(a: argparse.Namespace) -> int:
    from .agent.server import serve

    def ready():
        print(f"xanes-agent serve: listening on {a.subscribe}" + (f", publishing to {a.publish}" if a.publish else ""),
              flush=True)

    queue_options = None
    overrides = _run_overrides(a)
    if a.queue and set(overrides) - {"element", "edge"}:
        raise CLIError("queue-server mode takes --element/--edge only; name the fields in the plans' md['xas']")
    if a.queue:
        queue_options = {"detectors": a.detectors, "motor": a.motor, "batch_size": a.batch_size,
                         "max_points": a.max_points, "stability": {"updates": a.stable_updates},
                         "thresholds": {"cn_probability": a.cn_probability, "distance_std": a.distance_std,
                                        "charge_std": a.charge_std}}
    reports = serve(a.subscribe, _store(a), publish=a.publish, max_runs=a.max_runs, jsonl=a.jsonl,
                    png_dir=a.png_dir, ready=ready, strategy=a.strategy, queue=a.queue, queue_options=queue_options,
                    max_sessions=a.max_sessions, **overrides)
    if a.queue:
        for d in reports:
            what = d.get("reason") or d.get("why") or (d.get("plan") or {}).get("kwargs", {}).get("ranges", "")
            print(f"session {d['session']}: {d['kind']} after {d['n_points']} points: {what}")
        return 0
    for rep in reports:
        _print_report(rep)
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from .agent.server import replay, replay_documents
    from .catalog import CatalogError, is_tiled_uri, tiled_documents

    problems: list[str] = []
    if is_tiled_uri(a.source):
        docs = tiled_documents(a.source, uids=a.uid or (), search=a.search or (), limit=a.limit,
                               api_key=a.api_key, problems=problems)
        try:
            agents = replay_documents(docs, a.source, _store(a), jsonl=a.jsonl, png_dir=a.png_dir,
                                      strategy=a.strategy, problems=problems, **_run_overrides(a))
        except CatalogError as exc:
            raise CLIError(str(exc)) from exc
    else:
        if a.uid or a.search:
            raise CLIError("--uid and --search select runs in a Tiled catalog (give an http(s):// address)")
        if not Path(a.source).is_file():
            raise CLIError(f"file not found: {a.source}")
        agents = replay(a.source, _store(a), jsonl=a.jsonl, png_dir=a.png_dir, strategy=a.strategy,
                        problems=problems, **_run_overrides(a))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if not any(ag.finished for ag in agents):
        for ag in agents:
            for w in ag.warnings:
                print(f"warning: {w}", file=sys.stderr)
        raise CLIError(f"{a.source}: no run with a start document the agent could use")
    for ag in agents:
        for rep in ag.finished:
            _print_report(rep)
        for w in ag.warnings:
            print(f"warning: {w}")
    # 0: every line read and every run complete; 1: runs reported, but something was skipped or cut short
    return 1 if problems else 0


def ensure_demo_model(models: Path, element: str, trees: int = 50, quiet: bool = False) -> Path:
    """The bundle the demo uses: trained once on the bundled library's training split, then reused."""
    from .data.library import load_bundled_library
    from .models.model import BundleError, ElementModel
    from .models.training import data_hash, live_config, train_element

    path = model_path(models, element, "polynomial", "post_edge")
    cfg = live_config(n_estimators=trees, n_jobs=-1)
    want = {k: v for k, v in cfg.as_dict().items() if k != "n_jobs"}
    lib = load_bundled_library().where(element=element)
    # a quick model: every held-out row (never trained on) plus a seeded 1,500 of the training rows
    train = np.flatnonzero(lib.split != "test")
    keep = np.random.default_rng(0).choice(train, min(1500, len(train)), replace=False)
    lib = lib[np.sort(np.concatenate([keep, np.flatnonzero(lib.split == "test")]))]
    if path.exists():
        # reused only if made with this preset from these spectra (the bundled library grows)
        try:
            have = ElementModel.load(path)
            if have.training_data_hash == data_hash(lib) and all(
                have.config.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in want.items()
            ):
                return path
        except BundleError:
            pass  # unreadable: train it again
    if not quiet:
        print(f"training a {element} model once ({trees} trees x 10 seeds x 3 properties on {len(keep)} spectra; "
              f"full-size models: 'xanes-agent train') ...", flush=True)
    model = train_element(lib, element, cfg, progress=not quiet)
    return model.save(path)


def cmd_demo(a: argparse.Namespace) -> int:
    """The main job: a simulated adaptive XANES scan driven by the agent, on bundled data."""
    from bluesky import RunEngine

    from .agent import ModelStore, XANESAgent
    from .agent.view import save_png
    from .documents import JSONLWriter
    from .models.model import ElementModel
    from .foundation.normalization import find_e0
    from .plans import adaptive_xanes_scan
    from .simulator import make_beamline

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample = choose_sample(a)  # a wrong --sample-id is said at once, not after minutes of training
    bundle = ensure_demo_model(Path(a.models), a.element, quiet=a.quiet)
    model = ElementModel.load(bundle)
    print(f"sample {sample.id} ({sample.source}, held-out split): true labels {sample.labels}")
    bl = make_beamline(sample, seed=a.seed, flux=a.flux, dwell_time=a.dwell, include_truth=True)
    agent_docs = JSONLWriter(out / "agent.jsonl")
    agent = XANESAgent(ModelStore(models={a.element: model}), strategy=a.strategy, emit=agent_docs)
    RE = RunEngine({})
    raw = JSONLWriter(out / "scan.jsonl")
    RE.subscribe(raw)
    stop_doc = {}
    RE.subscribe(lambda name, doc: stop_doc.update(doc) if name == "stop" else None)
    from .foundation.edges import edge_energy

    RE(adaptive_xanes_scan([bl.det], bl.mono, agent, edge_energy=edge_energy(a.element), md=bl.md,
                                       max_points=a.max_points))
    raw.close()
    agent_docs.close()
    reason = stop_doc.get("reason", "?")
    rep = agent.finished[-1]
    n_adaptive = rep["n_points"]
    e0 = find_e0(sample.energy, sample.mu)
    n_full = len(np.arange(e0 - 30, e0 + 70 + 1e-9, 0.5))
    print(f"adaptive scan stopped after {n_adaptive} points ({n_adaptive / n_full:.0%} of a {n_full}-point "
          f"0.5 eV scan): {reason}")
    _print_report(rep)
    snap = agent.snapshot()
    if snap is not None:
        png = save_png(snap, out / "adaptive_scan.png")
        print(f"wrote {png}, {out / 'scan.jsonl'} (raw documents), {out / 'agent.jsonl'} (agent documents)")
    return 0


def register_agent(sub: argparse._SubParsersAction) -> None:
    from .agent.strategies import STRATEGIES
    from .foundation.normalization import NORMALIZATIONS

    def common(p):
        p.add_argument("--models", default="models", help="folder of model bundles")
        p.add_argument("--normalization", choices=NORMALIZATIONS, default=None,
                       help="which bundles where the folder holds several per element (default: post_edge)")
        p.add_argument("--strategy", choices=list(STRATEGIES), default="importance_uncertainty")
        p.add_argument("--jsonl", default=None, help="also write the agent's documents here")
        p.add_argument("--png-dir", default=None, help="save a PNG of the agent's view at the end of each run")
        f = p.add_argument_group("run metadata", "override what the start documents say (by default read under the "
                                 "conventions of xanes_agent.data.signals, and guessed from the stream's field names "
                                 "where they say nothing, with a warning)")
        f.add_argument("--element", type=_element, default=None, help="absorbing element of every run")
        f.add_argument("--edge", default=None, help="absorption edge (default: the start document's, else K)")
        f.add_argument("--energy-field", default=None, help="the energy field (eV)")
        f.add_argument("--mu-field", default=None, help="a field that holds mu")
        f.add_argument("--i0-field", default=None, help="incident intensity (with --it-field or --if-field)")
        f.add_argument("--it-field", default=None, help="transmitted intensity: mu = ln(I0/It)")
        f.add_argument("--if-field", default=None, help="fluorescence intensity: mu = If/I0")
        f.add_argument("--mode", choices=["mu", "transmission", "fluorescence"], default=None)

    pr = sub.add_parser("predict", help="predictions on measured spectra: XDI, Athena .prj or column files",
                        description="Predictions with calibrated intervals on measured spectra. mu is formed from "
                                    "the file's columns: a mu column, else transmission ln(I0/It), else "
                                    "fluorescence If/I0 (the choice is printed; flags override it).")
    pr.add_argument("files", nargs="+", type=_existing_file, metavar="FILE")
    pr.add_argument("--models", default=None, help="folder of model bundles (default: the demo's models, trained "
                                                   "once per element on the bundled library)")
    pr.add_argument("--element", type=_element, default=None, help="absorber (default: from the file, else "
                                                                   "guessed from the edge position)")
    pr.add_argument("--edge", default=None, help="absorption edge (default: from the file, else K)")
    pr.add_argument("--mode", choices=["mu", "transmission", "fluorescence"], default=None)
    pr.add_argument("--energy", default=None, metavar="COLUMN", help="energy column (name or 1-based number)")
    pr.add_argument("--mu", default=None, metavar="COLUMN", help="column that holds mu")
    pr.add_argument("--i0", default=None, metavar="COLUMN", help="incident-intensity column")
    pr.add_argument("--it", default=None, metavar="COLUMN", help="transmitted-intensity column")
    pr.add_argument("--if", dest="if_", default=None, metavar="COLUMN", help="fluorescence column")
    pr.add_argument("--json", action="store_true", help="print the records as JSON instead of the table")
    pr.add_argument("--png", default=None, metavar="DIR", help="also write one figure per spectrum here")
    pr.set_defaults(func=cmd_predict)

    s = sub.add_parser("serve", help="run the agent on a 0MQ document stream (separate process)")
    s.add_argument("--subscribe", default="127.0.0.1:5578", help="0MQ proxy output (HOST:PORT), loopback by default")
    s.add_argument("--publish", default=None, help="0MQ proxy input to publish the agent's documents to")
    s.add_argument("--max-runs", type=_positive_int, default=None, help="exit after this many runs")
    q = s.add_argument_group("queue-server mode", "suggest each sample's next plan to a bluesky-queueserver "
                             "(never starts the queue; needs the 'queue' extra)")
    q.add_argument("--queue", default=None, metavar="ADDR",
                   help="the RE Manager's 0MQ control address, e.g. 127.0.0.1:60615")
    q.add_argument("--detectors", nargs="+", default=["det"], help="detector names in the queue server")
    q.add_argument("--motor", default="mono_energy", help="energy positioner name in the queue server")
    q.add_argument("--batch-size", type=_positive_int, default=2, help="ranges per suggested plan")
    q.add_argument("--max-points", type=_positive_int, default=250, help="point budget per sample")
    q.add_argument("--max-sessions", type=_positive_int, default=None, help="exit after this many samples closed")
    q.add_argument("--cn-probability", type=float, default=0.9, help="stop when P(CN) reaches this")
    q.add_argument("--distance-std", type=float, default=0.01, help="... and the distance std (Angstrom) is below")
    q.add_argument("--charge-std", type=float, default=0.05, help="... and the charge std (e) is below")
    q.add_argument("--stable-updates", type=int, default=3,
                   help="also stop when the window is covered and this many runs' decisions agree (0: never)")
    common(s)
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("replay", help="feed recorded runs to the agent: a JSON-lines file or a Tiled catalog")
    r.add_argument("source", metavar="FILE|URI", help="a JSON-lines recording, or a Tiled address "
                                                      "(http://HOST:PORT[/path]; pip install 'xanes-agent[tiled]')")
    r.add_argument("--uid", nargs="+", default=None, help="Tiled: these runs (start-document uids)")
    r.add_argument("--search", nargs="+", default=None, metavar="KEY=VALUE",
                   help="Tiled: runs whose start document matches, e.g. element=Cu sample.id=pellet-7")
    r.add_argument("--limit", type=_non_negative_int, default=20, help="Tiled: the most recent N runs (0: all)")
    r.add_argument("--api-key", default=None, help="Tiled API key (default: $TILED_API_KEY)")
    common(r)
    r.set_defaults(func=cmd_replay)

    d = sub.add_parser("demo", help="main job: a simulated adaptive XANES scan with the agent on bundled data")
    sample_args(d)
    d.add_argument("--models", default=".cache/models", help="folder for the demo's model bundle")
    d.add_argument("--strategy", choices=list(STRATEGIES), default="importance_uncertainty")
    d.add_argument("--max-points", type=_positive_int, default=200)
    d.add_argument("--out", default="out/demo")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo, split="test")


_EXTRA_COMMANDS.append(register_agent)
