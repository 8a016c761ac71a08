"""Subcommands of the agent room: ``predict``, ``serve``, ``replay`` and the main job, ``demo``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..agent.stopping import DEFAULT_STABILITY
from .args import (
    CLIError,
    choose_sample,
    element_arg,
    existing_file,
    non_negative_int,
    positive_float,
    positive_int,
    sample_args,
)
from .text import format_prediction, print_report


def model_store(a: argparse.Namespace):
    from ..agent import ModelStore

    folder = Path(a.models)
    if not folder.is_dir():
        raise CLIError(f"model folder not found: {folder} (train one with 'xanes-agent train')")
    return ModelStore(folder, normalization=getattr(a, "normalization", None), intervals=a.intervals)


def cmd_predict(a: argparse.Namespace) -> int:
    """Predictions on measured spectra from files (XDI, Athena .prj, column files)."""
    from ..agent import ModelStore
    from ..agent.offline import predict_measured
    from ..agent.view import prediction_png
    from ..data.measured import MeasuredFileError, read_measured

    signal = {k: v for k, v in {"mode": a.mode, "mu": a.mu, "i0": a.i0, "it": a.it, "iff": a.if_}.items()
              if v is not None}
    demo_models = a.models is None
    store = ModelStore(Path(a.models or ".cache/models"), intervals="across-codes")  # measured spectra
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
                    from ..agent.offline import prepare
                    from ..foundation.edges import ELEMENTS
                    from ..models.demo import ensure_demo_model

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
                print("\n".join(format_prediction(rec)))
            if a.png:
                out = Path(a.png)
                out.mkdir(parents=True, exist_ok=True)
                stem = re.sub(r"[^\w.-]+", "_", rec["name"])
                sig, _ = ms.signal(**signal)
                prediction_png(rec, ms.energy, ms.mu(sig), store.predictor(rec["element"]).model, out / f"{stem}.png",
                               format_prediction(rec)[2:])
                rec["png"] = str(out / f"{stem}.png")
                if not a.json:
                    print(f"  figure: {rec['png']}")
    if a.json:
        print(json.dumps(records, indent=1, default=float))
    if not records:
        raise CLIError("no spectrum could be predicted")
    return 1 if failed else 0


def run_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The agent's keyword arguments from the run-metadata flags that were given."""
    pairs = {"element": a.element, "edge": a.edge, "energy_field": a.energy_field, "mu_field": a.mu_field,
             "i0_field": a.i0_field, "it_field": a.it_field, "if_field": a.if_field, "mode": a.mode}
    return {k: v for k, v in pairs.items() if v is not None}


def cmd_serve(a: argparse.Namespace) -> int:
    from ..agent.server import serve

    def ready():
        print(f"xanes-agent serve: listening on {a.subscribe}" + (f", publishing to {a.publish}" if a.publish else ""),
              flush=True)

    queue_options = None
    overrides = run_overrides(a)
    if a.queue and set(overrides) - {"element", "edge"}:
        raise CLIError("queue-server mode takes --element/--edge only; name the fields in the plans' md['xas']")
    if a.queue:
        queue_options = {"detectors": a.detectors, "motor": a.motor, "batch_size": a.batch_size,
                         "max_points": a.max_points,
                         "stability": {"updates": a.stable_updates, "undecided_updates": a.undecided_updates,
                                       "early_updates": a.early_updates},
                         "thresholds": {"cn_probability": a.cn_probability, "distance_std": a.distance_std,
                                        "charge_std": a.charge_std}}
    rate = {} if a.queue else {"min_interval": 1.0 / a.max_rate, "update_every": a.update_every,
                               "background": not a.inline}
    reports = serve(a.subscribe, model_store(a), publish=a.publish, max_runs=a.max_runs, jsonl=a.jsonl,
                    png_dir=a.png_dir, ready=ready, strategy=a.strategy, queue=a.queue, queue_options=queue_options,
                    max_sessions=a.max_sessions, **rate, **overrides)
    if a.queue:
        for d in reports:
            what = d.get("reason") or d.get("why") or (d.get("plan") or {}).get("kwargs", {}).get("ranges", "")
            print(f"session {d['session']}: {d['kind']} after {d['n_points']} points: {what}")
        return 0
    for rep in reports:
        print_report(rep)
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from ..agent.server import replay, replay_documents
    from ..catalog import CatalogError, is_tiled_uri, tiled_documents

    problems: list[str] = []
    if is_tiled_uri(a.source):
        docs = tiled_documents(a.source, uids=a.uid or (), search=a.search or (), limit=a.limit,
                               api_key=a.api_key, problems=problems)
        try:
            agents = replay_documents(docs, a.source, model_store(a), jsonl=a.jsonl, png_dir=a.png_dir,
                                      strategy=a.strategy, problems=problems, **run_overrides(a))
        except CatalogError as exc:
            raise CLIError(str(exc)) from exc
    else:
        if a.uid or a.search:
            raise CLIError("--uid and --search select runs in a Tiled catalog (give an http(s):// address)")
        if not Path(a.source).is_file():
            raise CLIError(f"file not found: {a.source}")
        agents = replay(a.source, model_store(a), jsonl=a.jsonl, png_dir=a.png_dir, strategy=a.strategy,
                        problems=problems, **run_overrides(a))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if not any(ag.finished for ag in agents):
        for ag in agents:
            for w in ag.warnings:
                print(f"warning: {w}", file=sys.stderr)
        raise CLIError(f"{a.source}: no run with a start document the agent could use")
    for ag in agents:
        for rep in ag.finished:
            print_report(rep)
        for w in ag.warnings:
            print(f"warning: {w}")
    # 0: every line read and every run complete; 1: runs reported, but something was skipped or cut short
    return 1 if problems else 0


def cmd_demo(a: argparse.Namespace) -> int:
    """The main job: a simulated adaptive XANES scan driven by the agent, on bundled data."""
    from bluesky import RunEngine

    from ..agent import ModelStore, XANESAgent
    from ..agent.view import save_png
    from ..documents import JSONLWriter
    from ..foundation.normalization import find_e0
    from ..models.demo import ensure_demo_model
    from ..models.model import ElementModel
    from ..plans import adaptive_xanes_scan
    from ..simulator import make_beamline

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
    from ..foundation.edges import edge_energy

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
    print_report(rep)
    snap = agent.snapshot()
    if snap is not None:
        png = save_png(snap, out / "adaptive_scan.png")
        print(f"wrote {png}, {out / 'scan.jsonl'} (raw documents), {out / 'agent.jsonl'} (agent documents)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..agent.strategies import STRATEGIES
    from ..foundation.normalization import NORMALIZATIONS
    from ..models.model import INTERVAL_KINDS

    def common(p):
        p.add_argument("--models", default="models", help="folder of model bundles")
        p.add_argument("--normalization", choices=NORMALIZATIONS, default=None,
                       help="which bundles where the folder holds several per element (default: post_edge)")
        p.add_argument("--strategy", choices=list(STRATEGIES), default="importance_uncertainty")
        p.add_argument("--intervals", choices=list(INTERVAL_KINDS), default="across-codes",
                       help="across-codes (default): intervals for measured spectra, where the bundles were calibrated "
                            "across codes (train --calibrate-across); same-code: for simulated runs of spectra "
                            "computed as the training spectra were")
        p.add_argument("--jsonl", default=None, help="also write the agent's documents here")
        p.add_argument("--png-dir", default=None, help="save a PNG of the agent's view at the end of each run")
        f = p.add_argument_group("run metadata", "override what the start documents say (by default read under the "
                                 "conventions of xanes_agent.data.signals, and guessed from the stream's field names "
                                 "where they say nothing, with a warning)")
        f.add_argument("--element", type=element_arg, default=None, help="absorbing element of every run")
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
    pr.add_argument("files", nargs="+", type=existing_file, metavar="FILE")
    pr.add_argument("--models", default=None, help="folder of model bundles (default: the demo's models, trained "
                                                   "once per element on the bundled library)")
    pr.add_argument("--element", type=element_arg, default=None, help="absorber (default: from the file, else "
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
    s.add_argument("--max-runs", type=positive_int, default=None, help="exit after this many runs")
    u = s.add_argument_group("update rate", "readings are appended as they arrive; the models run on the latest "
                             "state at a bounded rate, in a worker thread per run (the final update of a run always "
                             "sees every reading)")
    u.add_argument("--max-rate", type=positive_float, default=20.0, metavar="K",
                   help="model updates per second at most, per run (default 20)")
    u.add_argument("--update-every", type=positive_int, default=1, metavar="N",
                   help="readings at least between model updates (default 1)")
    u.add_argument("--inline", action="store_true",
                   help="update in the receiving thread instead of a worker (the rate limits still hold)")
    q = s.add_argument_group("queue-server mode", "suggest each sample's next plan to a bluesky-queueserver "
                             "(never starts the queue; needs the 'queue' extra)")
    q.add_argument("--queue", default=None, metavar="ADDR",
                   help="the RE Manager's 0MQ control address, e.g. 127.0.0.1:60615")
    q.add_argument("--detectors", nargs="+", default=["det"], help="detector names in the queue server")
    q.add_argument("--motor", default="mono_energy", help="energy positioner name in the queue server")
    q.add_argument("--batch-size", type=positive_int, default=2, help="ranges per suggested plan")
    q.add_argument("--max-points", type=positive_int, default=250, help="point budget per sample")
    q.add_argument("--max-sessions", type=positive_int, default=None, help="exit after this many samples closed")
    q.add_argument("--cn-probability", type=float, default=0.9, help="stop when P(CN) reaches this")
    q.add_argument("--distance-std", type=float, default=0.01, help="... and the distance std (Angstrom) is below")
    q.add_argument("--charge-std", type=float, default=0.05, help="... and the charge std (e) is below")
    q.add_argument("--stable-updates", type=int, default=DEFAULT_STABILITY["updates"],
                   help="also stop when the window is covered and this many runs' decisions agree (0: never)")
    q.add_argument("--undecided-updates", type=int, default=DEFAULT_STABILITY["undecided_updates"],
                   help="... or this many agree with the CN below P=0.6, said undecided (0: scan to the window's end)")
    q.add_argument("--early-updates", type=int, default=DEFAULT_STABILITY["early_updates"],
                   help="... or, from 80%% of the window, this many agree at P(CN) >= 0.9 (0: cover the window first)")
    common(s)
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("replay", help="feed recorded runs to the agent: a JSON-lines file or a Tiled catalog")
    r.add_argument("source", metavar="FILE|URI", help="a JSON-lines recording, or a Tiled address "
                                                      "(http://HOST:PORT[/path]; pip install 'xanes-agent[tiled]')")
    r.add_argument("--uid", nargs="+", default=None, help="Tiled: these runs (start-document uids)")
    r.add_argument("--search", nargs="+", default=None, metavar="KEY=VALUE",
                   help="Tiled: runs whose start document matches, e.g. element=Cu sample.id=pellet-7")
    r.add_argument("--limit", type=non_negative_int, default=20, help="Tiled: the most recent N runs (0: all)")
    r.add_argument("--api-key", default=None, help="Tiled API key (default: $TILED_API_KEY)")
    common(r)
    r.set_defaults(func=cmd_replay)

    d = sub.add_parser("demo", help="main job: a simulated adaptive XANES scan with the agent on bundled data")
    sample_args(d)
    d.add_argument("--models", default=".cache/models", help="folder for the demo's model bundle")
    d.add_argument("--strategy", choices=list(STRATEGIES), default="importance_uncertainty")
    d.add_argument("--max-points", type=positive_int, default=200)
    d.add_argument("--out", default="out/demo")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo, split="test")
