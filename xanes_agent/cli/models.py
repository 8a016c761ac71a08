"""Subcommands of the models room: ``train``, ``evaluate``, ``report``, ``info``."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..models.calibration import DOMAIN_QUANTILE
from ..models.neighbours import VOTE_BLUR, VOTE_SHARE
from .args import (
    CLIError,
    cluster_client,
    data_args,
    domain_quantile,
    element_arg,
    existing_file,
    load_collection,
    non_negative_int,
    only_source,
    positive_int,
    scheduler_arg,
    share,
    vote_blur,
)


def cmd_train(a: argparse.Namespace) -> int:
    from ..cluster import joblib_on

    every = load_collection(a, narrow=False)  # read once; --calibrate-across draws on all sources
    coll = only_source(every, a.source) if a.source else every
    other = None
    if a.calibrate_across:
        other = only_source(every, a.calibrate_across, "--calibrate-across")
        coll = coll[np.flatnonzero(coll.source != a.calibrate_across)]
        if not len(coll):
            raise CLIError(f"--calibrate-across {a.calibrate_across}: nothing left to train on")
    elements = a.elements or sorted(set(coll.element.tolist()))
    for el in elements:
        if el not in set(coll.element.tolist()):
            raise CLIError(f"no spectra of {el} in the data (have: {', '.join(sorted(set(coll.element.tolist())))})")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    with cluster_client(a.scheduler) as client:
        with (joblib_on(client) if client is not None else contextlib.nullcontext()):
            _train_all(a, coll, elements, other)
    return 0


def _train_all(a: argparse.Namespace, coll: Any, elements: list[str], other: Any = None) -> None:
    from ..models.features import edge_views
    from ..models.model import bundle_path
    from ..models.training import TrainConfig, live_config, train_element

    try:
        views = edge_views(a.edge_view)
    except ValueError as e:
        raise CLIError(f"--edge-view: {e}") from None
    for el in elements:
        for feat in a.featurization:
            kw = dict(featurization=feat, normalization=a.normalization, n_seeds=a.seeds,
                      n_estimators=a.trees, split_seed=a.seed, n_jobs=a.jobs,
                      calibration_folds=a.calibration_folds, realism_copies=a.experiment_like,
                      domain_quantile=a.domain_quantile, neighbour_vote=a.neighbour_vote, vote_blur=a.vote_blur,
                      views=views)
            if a.regressor_copies is not None:
                kw["regressor_copies"] = a.regressor_copies
            try:
                cfg = live_config(**kw) if a.live else TrainConfig(**kw)
            except ValueError as e:
                raise CLIError(f"{e} (--seeds; --edge-view 0 trains the CN forests without the committee)") from None
            m = train_element(coll, el, cfg, progress=not a.quiet,
                              other=other if other is not None and el in set(other.element.tolist()) else None)
            path = m.save(bundle_path(a.out, el, feat, a.normalization))
            print(f"{el} {feat}: wrote {path}")
            for name, pm in m.properties.items():
                print(f"  {name:20s} ({pm.label}): " + ", ".join(
                    f"{k}={v:.3f}" for k, v in pm.metrics.items() if isinstance(v, float)))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from ..models.model import ElementModel
    from ..models.report import evaluate_bundle

    m = ElementModel.load(a.model)
    coll = load_collection(a).where(element=m.element)
    if a.split != "all":
        coll = coll.where(split=a.split)
    if not len(coll):
        raise CLIError(f"no {m.element} spectra in the chosen data/split")
    src, counts = np.unique(coll.source, return_counts=True)
    print(f"{m.element}, split {a.split}: {len(coll)} spectra from "
          + ", ".join(f"{s_} ({c})" for s_, c in zip(src, counts))
          + ("" if len(src) == 1 or a.source else " (pooled; --source SOURCE for one)"))
    results = evaluate_bundle(m, coll, permutation=a.permutation)
    for name, res in results.items():
        print(f"{name:20s} ({res['label']}, n={res['n']}): " + ", ".join(
            f"{k}={v:.3f}" for k, v in res.items() if isinstance(v, float)))
        if a.permutation:
            print(f"  permutation top-10: {', '.join(res['permutation_importance_top10'])}")
            print(f"  impurity    top-10: {', '.join(res['impurity_importance_top10'])}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from ..models import report
    from ..models.model import ElementModel

    paths = sorted(Path(a.models).glob("*.npz"))
    if not paths:
        raise CLIError(f"no model bundles (*.npz) in {a.models}")
    models = [ElementModel.load(p) for p in paths]
    coll = load_collection(a)
    written = report.write_report(models, coll, Path(a.out))
    print(report.metrics_table(models))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from ..models.model import ElementModel

    m = ElementModel.load(a.model)
    print(f"{a.model}: {m.element} {m.edge}-edge, {m.featurization} features ({len(m.feature_names)}), "
          f"{m.normalization} normalization, grid {m.grid.start:+g}..{m.grid.stop:+g} eV x {m.grid.n}")
    print(f"trained on {m.n_spectra} spectra from {', '.join(m.sources)}; data sha256 {m.training_data_hash[:16]}...")
    print(f"versions: {m.versions}")
    from ..foundation.properties import decides

    for name, pm in m.properties.items():
        informs = "" if decides(name) else "; informs only: no scan waits or measures for it"
        print(f"  {name} ({pm.label}, {pm.kind}, {pm.packed.n_forests} seeds, {len(pm.packed.roots)} trees, "
              f"n_train={pm.n_train}, n_test={pm.n_test}{informs})")
        print("    " + json.dumps(pm.metrics))
    views = m.config.get("views") or []
    if views:
        print("CN forests: a committee of views, the seeds taking turns: "
              + ", ".join(f"E0{lo:+g}..E0{hi:+g} eV" for lo, hi in views))
    v = m.vote
    if v is None:
        print("CN answer: the forests alone")
    else:
        voters = (f"{len(v.labels)} training spectra" if v.parents is None else
                  f"{len(np.unique(v.parents))} parent structures (each once per CN; {len(v.labels)} spectra)")
        blur = f", spectra blurred {v.blur:g} eV FWHM" if v.blur > 0 else ""
        print(f"CN answer: the forests x {1 - v.share:g} + the vote x {v.share:g} of the {v.k} nearest of {voters}"
              f"{blur}")
    cal = m.calibration
    if cal is None:
        print("uncertainty: seed spread only (not calibrated: a predictive uncertainty it is not)")
    else:
        print(f"uncertainty: calibrated out of family ({cal.method.get('folds')} folds by "
              f"{cal.method.get('groups')}, {cal.method.get('n_held_out_spectra')} spectra): "
              f"{cal.method.get('interval')}; domain flag "
              + ("above score " if cal.domain.joint_limits is None else "limits: score ")
              + (f"{cal.domain.threshold:.2f}" if cal.domain.far_limits is None else
                 " / ".join(f"{x:.2f}" for x in cal.domain.far_limits))
              + ("" if cal.domain.spread_limits is None else
                 (" or where the distance trees' spread exceeds " if cal.domain.joint_limits is None
                  else ", the distance trees' spread ") + " / ".join(
                     f"{x:.3f}" if np.isfinite(x) else "none" for x in cal.domain.spread_limits) + " A")
              + ("" if cal.domain.far_limits is None and cal.domain.spread_limits is None else
                 " (coverage 0-50 / 50-80 / 80-100 %)")
              + ("" if cal.domain.joint_limits is None else
                 ", read together: out of domain where either passes "
                 + " / ".join(f"{x:.2f}" for x in cal.domain.alone_limits)
                 + " x its limit, or the geometric mean of the two ratios passes "
                 + " / ".join(f"{x:.2f}" if np.isfinite(x) else "none" for x in cal.domain.joint_limits))
              + f"; CN probability {cal.method.get('cn_probability', 'calibrated (isotonic map)')}")
        unseen = cal.method.get("cn_ece_unseen_folds")
        if unseen:
            print(f"    CN probability on parents the map was not fitted on: ECE {unseen['map']:.3f} mapped, "
                  f"{unseen['forests']:.3f} the forests' own")
        for name, q in cal.quantiles.items():
            inside = cal.quantiles_in_domain.get(name)
            bins = cal.scale_bins.get(name)
            print(f"    {name}: 68/90 % interval scale per coverage band (0-50, 50-80, 80-100 %): "
                  + ("in the domain " + "; ".join(f"{a:.3g}/{b:.3g}" for a, b in inside) + "; out of domain "
                     if inside is not None else "")
                  + "; ".join(f"{a:.3g}/{b:.3g}" for a, b in q)
                  + ("; across codes: " + "; ".join(f"{a:.3g}/{b:.3g}" for a, b in cal.across_codes[name])
                     if name in cal.across_codes else ""))
            if bins is not None:
                print("      in the domain per bin of the scale (edges; 68/90 % per bin), per coverage band: "
                      + "; ".join(" / ".join(f"{e:.3g}" for e in entry["edges"]) + " ("
                                  + ", ".join(f"{a:.3g}/{b:.3g}" for a, b in entry["quantiles"]) + ")"
                                  for entry in bins))
        ac = cal.method.get("across_codes")
        print(f"  across codes: calibrated on {ac['n_spectra']} {ac['source']} spectra of {ac['n_parents']} held-out "
              "parent structures (used with --intervals across-codes)" if ac else
              "  across codes: not calibrated (intervals hold for spectra computed as the training spectra were)")
        cn_across = (ac or {}).get("cn")
        if cn_across:
            unseen = cn_across.get("ece_unseen_folds", {})
            print(f"    CN probability across codes: {cn_across['rule']} (accuracy {cn_across['accuracy']:.2f}"
                  + (f"; ECE on folds not fitted on {unseen['map']:.3f} mapped, "
                     f"{unseen['forests']:.3f} the forests' own" if unseen else "") + ")")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..foundation.normalization import NORMALIZATIONS
    from ..models.features import DEFAULT_FEATURIZATION, EDGE_VIEW_STOP, FEATURIZATIONS

    t = sub.add_parser("train", help="train seed-ensemble forests per element")
    data_args(t)
    t.add_argument("--elements", nargs="+", type=element_arg, default=None)
    t.add_argument("--featurization", nargs="+", choices=FEATURIZATIONS, default=[DEFAULT_FEATURIZATION])
    t.add_argument("--edge-view", type=float, default=EDGE_VIEW_STOP, metavar="EV",
                   help="a committee of views: half the forests see the whole window, half only the features below "
                        "E0 + EV eV (the pre-edge and edge; default %(default)s; 0: every forest sees every feature; "
                        "xanes_agent.models.training)")
    t.add_argument("--normalization", choices=NORMALIZATIONS, default="post_edge")
    t.add_argument("--seeds", type=positive_int, default=10)
    t.add_argument("--trees", type=positive_int, default=100)
    t.add_argument("--seed", type=int, default=0, help="split and forest seed (recorded in the bundle)")
    t.add_argument("--live", action="store_true",
                   help="train for measured spectra (noise and E0-jitter copies, min_samples_leaf=5): "
                        "the models the agent should use at a beamline")
    t.add_argument("--jobs", type=int, default=None, help="joblib workers (-1: all cores)")
    t.add_argument("--experiment-like", type=non_negative_int, default=0, metavar="N",
                   help="add N experiment-like copies of each training spectrum (0.5-3 eV broadening, +-1 eV E0, "
                        "3 %% normalization, noise: xanes_agent.models.realism)")
    t.add_argument("--regressor-copies", type=non_negative_int, default=None, metavar="N",
                   help="experiment-like copies of each training spectrum for the distance and charge models only "
                        "(default: TrainConfig's, one: their errors on new structures fall by a sixth; 0: none)")
    t.add_argument("--calibration-folds", type=non_negative_int, default=5, metavar="K",
                   help="calibrate intervals, CN probability and the domain flag on K folds by parent structure "
                        "(0: seed spread only, not a predictive uncertainty)")
    t.add_argument("--domain-quantile", type=domain_quantile, default=DOMAIN_QUANTILE, metavar="Q",
                   help="flag a spectrum out of domain beyond this quantile of the training spectra's in-family "
                        "distance (about 1 - Q of in-family spectra flagged; default %(default)s)")
    t.add_argument("--neighbour-vote", type=share, default=VOTE_SHARE, metavar="SHARE",
                   help="share of the 5 nearest training spectra's vote in the CN probability, beside the forests "
                        "(0: the forests alone; default %(default)s; xanes_agent.models.neighbours)")
    t.add_argument("--vote-blur", type=vote_blur, default=VOTE_BLUR, metavar="EV",
                   help="the vote compares spectra blurred by a Gaussian of this FWHM (eV; 0: as they are; "
                        "default %(default)s): real sites and the idealised families differ in sharpness")
    t.add_argument("--calibrate-across", default=None, metavar="SOURCE",
                   help="spectra of this source (another code, e.g. omnixas-feff9) do not train: they calibrate the "
                        "intervals the agent states for measured spectra (--intervals across-codes)")
    t.add_argument("--out", default="models")
    t.add_argument("--quiet", action="store_true")
    scheduler_arg(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a model bundle on a split of the data")
    e.add_argument("model", type=existing_file)
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
    i.add_argument("model", type=existing_file)
    i.set_defaults(func=cmd_info)
