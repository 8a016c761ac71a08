"""Does the stated uncertainty hold out of family? Coverage, reliability and the domain flag (issue 14).

    python benchmarks/calibration.py [--library LIB.npz] [--elements ...] [--trees 50] [--out out/calibration]

Nested, so nothing is judged on data its calibration saw:

* **out of family** (per element, ``feff10-project``): parent structures (prototype families, real
  hosts) in 5 outer folds; for each, a model is trained *and calibrated* (its own inner folds) on
  the other four and predicts the held-out fold, whole and masked (low 30/50/75 % of the window);
  with ``--hold-out type`` the outer folds keep each structure type together (a family, its
  sibling families and the hosts of its framework), and the last column gives the figures of the
  prototype families alone (each family weighing 1);
* **another code** (Cu): trained and calibrated on the project FEFF10 Cu spectra, tested on the
  OmniXAS FEFF 9 Cu spectra of parents it never saw (5 folds by parent over both sets), with the
  same-code intervals and with the across-codes ones, calibrated on the FEFF 9 spectra of the
  *other* folds' parents (they never train; ``train_element(other=...)``); whole and masked.

Printed per row: coverage of the nominal 68 % and 90 % intervals (distance, charge label; the FEFF
charge transfer per parent, where the spectra carry it), the
CN accuracy and expected calibration error (ECE) of the calibrated probability against the raw
forest probability, and the domain flag: the share of held-out spectra flagged, the share of
spectra with a distance error above 3x the in-family MAE that are flagged, and the share of the
element's in-family held-out spectra (the library's by-material split, and with ``--in-family-splits
K`` K-1 more disjoint tenths of the materials, pooled) flagged, whole and
(partial) masked to the low 30/50/75 % of the window (and, as the baseline, the partial ones the
distance test flags with one limit for every coverage, as before bundle format 8); in brackets the
same for the flag's first test alone (the distance to the training spectra, without the trees'
spread: ``domain_far``). Writes
``coverage.png`` (coverage against nominal level) and ``reliability.png`` (CN: out of family, and
across codes with the same-code and the across-codes probability maps) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xanes_agent.data.library import (
    PROJECT_SOURCE,
    load_bundled_library,
    parent_groups,
    type_groups,
    with_structure_types,
)
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE
from xanes_agent.data.readers import read_library
from xanes_agent.foundation.edges import ELEMENTS
from xanes_agent.foundation.properties import FEFF_CHARGE, REGRESSORS
from xanes_agent.models.calibration import (
    confidence_ece,
    expected_calibration_error,
)
from xanes_agent.models.evaluation import (
    CN_CLASSES,
    group_folds,
    group_mean_se,
    group_weights,
    joint_group_folds,
    on_cn_classes,
)
from xanes_agent.models.features import spectra_to_grid
from xanes_agent.models.training import TrainConfig, assign_splits, live_config, train_element, with_low_windows

NOMINAL = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.8, 0.9, 0.95])


class Collector:
    """Held-out predictions of one evaluation, pooled over folds."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, model, X: np.ndarray, labels: dict[str, np.ndarray], full: np.ndarray,
            groups: np.ndarray) -> None:
        preds = model.predict_grid(X)
        for name, p in preds.items():
            pm = model.properties[name]
            y = labels[pm.label]
            if "proba" in p:  # a fold whose training lacked a class: columns on all CN classes
                for key in ("proba", "raw_proba"):
                    p[key] = on_cn_classes(p[key], p["classes"])
                p["classes"] = np.array(CN_CLASSES)
            self.rows.append({"name": name, "y": y, "full": full, "group": np.asarray(groups, str),
                              **{k: np.asarray(v) for k, v in p.items()
                                                                       if k != "classes"},
                              "classes": np.asarray(p.get("classes", []))})

    def pooled(self, name: str) -> dict[str, np.ndarray]:
        parts = [r for r in self.rows if r["name"] == name]
        keys = set.intersection(*(set(r) for r in parts)) - {"name", "classes"}
        out = {k: np.concatenate([r[k] for r in parts]) for k in keys}
        out["classes"] = parts[0]["classes"]
        return out


def coverage_at(p: dict[str, np.ndarray], levels=NOMINAL) -> np.ndarray:
    """Empirical coverage of central intervals at each nominal level, from the stored 68/90 %
    half-widths' conformal scale (interpolated in the score's quantile: the model stores two
    levels; others are read off the same score distribution by scaling the 68 % half-width)."""
    ok = np.isfinite(p["y"]) & np.isfinite(p["prediction"])
    err = np.abs(p["y"][ok] - p["prediction"][ok])
    hw68 = p["std"][ok]
    return np.array([np.mean(err <= hw68 * _ratio(L)) for L in levels])


def _ratio(level: float) -> float:
    """Half-width at ``level`` over the half-width at 68 %, for a Gaussian-shaped score (used only
    for the curve between and beyond the two calibrated levels, which are read exactly)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2) / norm.ppf(0.5 + 0.68 / 2))


def summary(c: Collector, in_family_mae: float | None) -> dict:
    out: dict = {}
    for name in REGRESSORS:
        if not any(r["name"] == name for r in c.rows):
            continue
        p = c.pooled(name)
        ok = np.isfinite(p["y"]) & np.isfinite(p["prediction"])
        if not ok.any():  # a label the held-out spectra lack (FEFF 9: no FEFF10 charge transfer)
            continue
        err = np.abs(p["y"] - p["prediction"])
        # for a new structure: each held-out parent weighs 1 (a family of 40 strained copies
        # counts once, like a host structure with one site: group_mean_se)
        fam = np.char.startswith(p["group"][ok], "family:")  # the prototype families alone
        for level, key in ((0.68, "interval68"), (0.9, "interval90")):
            lo, hi = p[key][:, 0], p[key][:, 1]
            inside = (p["y"] >= lo) & (p["y"] <= hi)
            stem = f"{name}_cov{int(level * 100)}"
            out[stem] = float(np.mean(inside[ok]))
            out[f"{stem}_full"] = float(np.mean(inside[ok & p["full"]]))
            # with their standard errors over parents (families): how far a miss is from noise
            out[f"{stem}_per_parent"], out[f"{stem}_per_parent_se"] = group_mean_se(inside[ok], p["group"][ok])
            if fam.any():
                out[f"{stem}_families"], out[f"{stem}_families_se"] = group_mean_se(inside[ok][fam],
                                                                                    p["group"][ok][fam])
                out[f"{stem}_families_n"] = int(len(np.unique(p["group"][ok][fam])))
            # spectra in the domain and flagged ones (each parent weighing 1 within): their intervals
            # come from different quantiles (bundle format 12), each must hold where it is used
            for tag, sel in (("in_domain", p["in_domain"][ok]), ("flagged", ~p["in_domain"][ok])):
                if sel.any():
                    out[f"{stem}_{tag}"] = float(
                        np.average(inside[ok][sel], weights=group_weights(p["group"][ok][sel])))
        out[f"{name}_mae_full"] = float(np.mean(err[ok & p["full"]]))
        out[f"{name}_halfwidth68_full"] = float(np.median(p["std"][ok & p["full"]]))
        if name == "mean_nn_distance":
            full = ok & p["full"]
            big = None if in_family_mae is None else full & (err > 3 * in_family_mae)
            if big is not None:
                out["big_error_n"] = int(big.sum())
            # the flag, and (suffix _far) its first test alone: the distance to the training spectra
            for key, flag in (("", ~p["in_domain"]), ("_far", p.get("domain_far", ~p["in_domain"]))):
                out[f"flagged_share{key}"] = float(np.mean(flag[full]))
                if big is not None:
                    out[f"big_error_flagged{key}"] = float(np.mean(flag[big])) if big.any() else float("nan")
    if any(r["name"] == "coordination_number" for r in c.rows):
        p = c.pooled("coordination_number")
        classes = p["classes"].astype(float)
        ok = np.isin(p["y"], classes)
        idx = np.searchsorted(classes, p["y"][ok])
        out["cn_n"] = int(ok.sum())
        out["cn_accuracy"] = float(np.mean(classes[np.argmax(p["raw_proba"][ok], axis=1)] == p["y"][ok]))
        out["cn_ece_raw"] = expected_calibration_error(p["raw_proba"][ok], idx)
        k = np.argmax(p["raw_proba"][ok], axis=1)  # the predicted class; its calibrated probability
        out["cn_ece_calibrated"] = confidence_ece(p["proba"][ok][np.arange(len(k)), k], k == idx)
        # for a new structure: each held-out parent weighs 1 (one family of 69 near-identical
        # spectra that is wrong with confidence 0.99 otherwise decides the pooled figure)
        w = group_weights(p["group"][ok])
        out["cn_ece_raw_per_parent"] = confidence_ece(p["raw_proba"][ok][np.arange(len(k)), k], k == idx, weights=w)
        out["cn_ece_calibrated_per_parent"] = confidence_ece(p["proba"][ok][np.arange(len(k)), k], k == idx, weights=w)
        out["cn_accuracy_per_parent"] = float(np.average(k == idx, weights=w))
        fam = np.char.startswith(p["group"][ok], "family:")
        if fam.any():
            out["cn_accuracy_families"] = float(np.average((k == idx)[fam], weights=w[fam]))
            out["cn_ece_calibrated_families"] = confidence_ece(p["proba"][ok][np.arange(len(k)), k][fam],
                                                               (k == idx)[fam], weights=w[fam])
    return out


def masked_versions(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole spectra and their low windows (training.with_low_windows); (X, full flag, source row)."""
    parts = with_low_windows(X)
    return (np.vstack(parts), np.arange(len(parts) * len(X)) < len(X), np.tile(np.arange(len(X)), len(parts)))


def run_out_of_family(sub, el: str, cfg: TrainConfig, n_folds: int, coll: Collector,
                      by_type: bool = False) -> None:
    """Outer folds by parent structure, or with ``by_type`` by structure type where the library
    knows it (:func:`~xanes_agent.data.library.type_groups`: a family, its sibling families and the
    hosts of its framework share a fold)."""
    X, e0 = spectra_to_grid(sub.energy, sub.mu)
    groups = parent_groups(sub)
    folds = group_folds(type_groups(sub) if by_type else groups, n_folds)
    for f in np.unique(folds):
        model = train_element(sub, el, cfg, progress=False, train_mask=folds != f)
        te = np.flatnonzero((folds == f) & np.isfinite(e0))
        Xm, full, src = masked_versions(X[te])
        coll.add(model, Xm, {k: v[te][src] for k, v in sub.labels.items()}, full, groups[te][src])


def in_family_tests(sub, cfg: TrainConfig, n_splits: int) -> list[np.ndarray]:
    """Rows held out in family: the library's by-material split (siblings in training), then
    ``n_splits - 1`` more disjoint tenths of the other materials. One tenth is ~100-200 spectra,
    so its flagged share moves by +-0.02-0.03 with the draw, and the library's split is the same
    draw every run."""
    test = assign_splits(sub, cfg.split_seed) == "test"
    rest = np.random.default_rng(cfg.split_seed + 1).permutation(np.unique(sub.material_id[~test]))
    n = max(1, len(np.unique(sub.material_id)) // 10)
    return [test] + [np.isin(sub.material_id, rest[j * n:(j + 1) * n]) for j in range(n_splits - 1)]


def in_family_flagged(models_and_tests, sub) -> dict[str, float]:
    """Share of in-family held-out spectra (``(model, test rows)`` pairs, each model trained on the
    other rows) flagged out of domain, and by the distance test alone (suffix ``_far``): whole
    spectra, and (prefix ``partial_``) their low windows; pooled over the pairs."""
    X, e0 = spectra_to_grid(sub.energy, sub.mu)
    flags: dict[str, list[np.ndarray]] = {"": [], "_far": [], "_one_limit": []}
    fulls = []
    for model, test in models_and_tests:
        te = np.flatnonzero(test & np.isfinite(e0))
        if not len(te):
            continue
        Xm, full, _ = masked_versions(X[te])
        first = next(iter(model.predict_grid(Xm).values()))
        flagged = ~np.asarray(first["in_domain"], bool)
        flags[""].append(flagged)
        flags["_far"].append(np.asarray(first.get("domain_far", flagged), bool))
        # the baseline in the same run: the distance test with one limit for every coverage (format 7)
        flags["_one_limit"].append(np.asarray(first["domain_score"]) > model.calibration.domain.threshold)
        fulls.append(full)
    if not fulls:
        return {}
    full = np.concatenate(fulls)
    f = {k: np.concatenate(v) for k, v in flags.items()}
    return {"in_family_flagged": float(np.mean(f[""][full])), "in_family_flagged_far": float(np.mean(f["_far"][full])),
            "partial_in_family_flagged": float(np.mean(f[""][~full])),
            "partial_in_family_flagged_far": float(np.mean(f["_far"][~full])),
            "partial_in_family_flagged_one_limit": float(np.mean(f["_one_limit"][~full])),
            "in_family_n": int(full.sum()), "in_family_splits": len(fulls),
            "spread_limits": [float(x) for x in models_and_tests[0][0].calibration.domain.spread_limits]}


def run_transfer(project_cu, omni, cfg: TrainConfig, n_folds: int, same: Collector, across: Collector) -> None:
    Xo, e0 = spectra_to_grid(omni.energy, omni.mu)
    po, pp = parent_groups(omni), parent_groups(project_cu)
    fp, fo = joint_group_folds(pp, po, n_folds)  # one parent, one fold, in both sets
    for f in range(n_folds):
        model = train_element(project_cu, "Cu", cfg, progress=False, train_mask=fp != f,
                              other=omni[np.flatnonzero(fo != f)])
        te = np.flatnonzero((fo == f) & np.isfinite(e0))
        Xm, full, src = masked_versions(Xo[te])  # whole and masked, as the out-of-family rows
        for intervals, coll in (("same-code", same), ("across-codes", across)):
            model.intervals = intervals
            coll.add(model, Xm, {k: v[te][src] for k, v in omni.labels.items()}, full, po[te][src])


def plots(results: dict[str, Collector], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, name, title in ((axes[0], "mean_nn_distance", "distance"), (axes[1], "charge", "charge label"),
                            (axes[2], FEFF_CHARGE, "FEFF charge transfer")):
        for label, c in results.items():
            if not any(r["name"] == name for r in c.rows):
                continue
            p = c.pooled(name)
            full = p["full"] & np.isfinite(p["y"])
            if not full.any():
                continue
            sub = {k: (v[full] if isinstance(v, np.ndarray) and len(v) == len(full) else v) for k, v in p.items()}
            ax.plot(NOMINAL, coverage_at(sub), "o-", ms=3, label=label)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="0.9")
        for L in (0.68, 0.9):
            ax.axvline(L, color="0.6", lw=0.6)
        ax.set_xlabel("nominal coverage")
        ax.set_ylabel("empirical coverage (whole held-out spectra)")
        ax.set_title(f"{title}: intervals out of family / across codes", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "coverage.png", dpi=110)
    plt.close(fig)

    # CN reliability: out of family (every element's held-out parents pooled), and across codes
    # (FEFF 9 spectra of new parents) with the same-code map and with the map fitted across codes
    family = [c for name, c in results.items() if name.endswith("out of family")]
    panels = [("out of family, elements pooled", [("before the map (forests + vote)", "raw_proba", family),
                                                   ("calibrated", "proba", family)])]
    if "Cu FEFF10 -> OmniXAS FEFF9" in results:
        same, across = results["Cu FEFF10 -> OmniXAS FEFF9"], results["Cu FEFF10 -> OmniXAS FEFF9, across-codes"]
        panels.append(("Cu FEFF10 -> OmniXAS FEFF 9", [("before the map (forests + vote)", "raw_proba", [same]),
                                                       ("same-code map", "proba", [same]),
                                                       ("across-codes map", "proba", [across])]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    edges = np.linspace(0, 1, 11)
    for ax, (title, curves) in zip(axes[0], panels):
        for label, key, colls in curves:
            conf_all, corr_all = [], []
            for c in colls:
                if not any(r["name"] == "coordination_number" for r in c.rows):
                    continue
                p = c.pooled("coordination_number")
                classes = p["classes"].astype(float)
                ok = np.isin(p["y"], classes)
                k = np.argmax(p["raw_proba"][ok], axis=1)
                conf_all.append(p[key][ok][np.arange(len(k)), k])
                corr_all.append(classes[k] == p["y"][ok])
            if not conf_all:
                continue
            conf, corr = np.concatenate(conf_all), np.concatenate(corr_all)
            b = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, 9)
            xs = [conf[b == i].mean() for i in range(10) if np.any(b == i)]
            ys = [corr[b == i].mean() for i in range(10) if np.any(b == i)]
            ax.plot(xs, ys, "o-", label=f"{label} (ECE {confidence_ece(conf, corr):.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("stated probability of the predicted CN")
        ax.set_ylabel("fraction correct (held-out spectra)")
        ax.set_title(f"CN reliability, {title}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default=None)
    ap.add_argument("--elements", nargs="+", default=list(ELEMENTS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-transfer", action="store_true")
    ap.add_argument("--in-family-splits", type=int, default=1, metavar="K",
                    help="in-family flagged share over K disjoint tenths of the materials (the library's split "
                         "and K-1 more, a model trained without each): K x the spectra, K x the training")
    ap.add_argument("--out", default="out/calibration")
    ap.add_argument("--interval-unit", choices=["parent", "spectrum"], default="parent",
                    help="conformal quantile for a new parent structure (default) or a new spectrum (the old rule)")
    ap.add_argument("--experiment-like", type=int, default=0, metavar="N",
                    help="train (and calibrate) on N experiment-like copies per spectrum (models.realism)")
    ap.add_argument("--live", action="store_true", help="the live preset (training.live_config)")
    ap.add_argument("--domain-quantile", type=float, default=TrainConfig.domain_quantile,
                    help="flag out of domain beyond this quantile of the in-family distance (TrainConfig)")
    ap.add_argument("--cn-map", choices=["single", "domain"], default="domain",
                    help="one CN probability map, or one each for in- and out-of-domain spectra")
    ap.add_argument("--hold-out", choices=["parent", "type"], default="parent",
                    help="outer folds by parent structure, or by structure type (a family with its sibling "
                         "families and the hosts of its framework, xanes_agent.data.frameworks)")
    a = ap.parse_args()
    if a.in_family_splits < 1:
        ap.error(f"--in-family-splits must be at least 1 (the library's split), got {a.in_family_splits}")
    lib = read_library(a.library) if a.library else load_bundled_library()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(n_seeds=a.seeds, n_estimators=a.trees, n_jobs=-1, interval_unit=a.interval_unit, cn_map=a.cn_map,
              realism_copies=a.experiment_like, domain_quantile=a.domain_quantile)
    cfg = live_config(**kw) if a.live else TrainConfig(**kw)
    project = lib.where(source=PROJECT_SOURCE)
    if a.hold_out == "type":  # a library built before the type table: the hosts' types from their structures
        from xanes_agent.data.frameworks import DEFAULT_CACHE

        project = with_structure_types(project, cache_file=DEFAULT_CACHE)
    results: dict[str, Collector] = {}
    table: dict[str, dict] = {}
    head = ("| evaluation | d cov68 | d cov90 | d cov68/90 per parent | charge cov68 | charge cov90 "
            "| charge cov68/90 per parent | FEFF charge cov68/90 per parent | CN acc. | CN ECE raw / calibrated "
            "| per parent: CN acc., ECE raw / "
            "calibrated | flagged | big errors flagged | in-family flagged (whole; partial) "
            "| families alone, per family: d cov68/90, charge cov68/90, CN acc., ECE calibrated |")
    print(head + "\n" + "|---" * 15 + "|")
    mae_in_family = {}
    for el in a.elements:
        t0 = time.perf_counter()
        sub = project.where(element=el)
        if not len(sub):
            continue
        c = Collector()
        run_out_of_family(sub, el, cfg, a.folds, c, by_type=a.hold_out == "type")
        # in-family MAE: the library's own by-material split (siblings in training)
        m = train_element(sub, el, cfg, progress=False)
        mae_in_family[el] = m.properties["mean_nn_distance"].metrics.get("mae_mean", float("nan"))
        results[f"{el} out of family"] = c
        table[f"{el} out of family"] = summary(c, mae_in_family[el])
        row = table[f"{el} out of family"]
        tests = in_family_tests(sub, cfg, a.in_family_splits)
        row.update(in_family_flagged([(m, tests[0])] + [(train_element(sub, el, cfg, progress=False, train_mask=~t), t)
                                                        for t in tests[1:]], sub))
        _print(f"{el} out of family", table[f"{el} out of family"], time.perf_counter() - t0)
    omni = lib.where(source=OMNIXAS_SOURCE, element="Cu")
    if not a.no_transfer and len(omni) and "Cu" in a.elements:
        t0 = time.perf_counter()
        same, across = Collector(), Collector()
        run_transfer(project.where(element="Cu"), omni, cfg, a.folds, same, across)
        for name, c in (("Cu FEFF10 -> OmniXAS FEFF9", same), ("Cu FEFF10 -> OmniXAS FEFF9, across-codes", across)):
            results[name] = c
            table[name] = summary(c, mae_in_family.get("Cu"))
            _print(name, table[name], time.perf_counter() - t0)
    plots(results, out)
    (out / "calibration.json").write_text(json.dumps({"in_family_distance_mae": mae_in_family, "rows": table},
                                                     indent=1))
    print(f"wrote {out}/calibration.json, coverage.png, reliability.png")


def _print(name: str, s: dict, seconds: float) -> None:
    g = lambda k, fmt="{:.2f}": fmt.format(s[k]) if k in s and s[k] == s[k] else "-"  # noqa: E731
    print(f"| {name} | {g('mean_nn_distance_cov68')} | {g('mean_nn_distance_cov90')} "
          f"| {g('mean_nn_distance_cov68_per_parent')} / {g('mean_nn_distance_cov90_per_parent')} "
          f"| {g('charge_cov68')} "
          f"| {g('charge_cov90')} | {g('charge_cov68_per_parent')} / {g('charge_cov90_per_parent')} "
          f"| {g(FEFF_CHARGE + '_cov68_per_parent')} / {g(FEFF_CHARGE + '_cov90_per_parent')} "
          f"| {g('cn_accuracy')} | {g('cn_ece_raw', '{:.3f}')} / {g('cn_ece_calibrated', '{:.3f}')} "
          f"| {g('cn_accuracy_per_parent')}, {g('cn_ece_raw_per_parent', '{:.3f}')} / "
          f"{g('cn_ece_calibrated_per_parent', '{:.3f}')} "
          f"| {g('flagged_share')} ({g('flagged_share_far')}) "
          f"| {g('big_error_flagged')} ({g('big_error_flagged_far')}; n={s.get('big_error_n', 0)}) "
          f"| {g('in_family_flagged')} ({g('in_family_flagged_far')}; n={s.get('in_family_n', 0)}); partial "
          f"{g('partial_in_family_flagged')} ({g('partial_in_family_flagged_far')}; one limit "
          f"{g('partial_in_family_flagged_one_limit')}) "
          f"| {g('mean_nn_distance_cov68_families')} / {g('mean_nn_distance_cov90_families')}, "
          f"{g('charge_cov68_families')} / {g('charge_cov90_families')}, {g('cn_accuracy_families')}, "
          f"{g('cn_ece_calibrated_families', '{:.3f}')} |  ({seconds:.0f} s)",
          flush=True)
    print(f"|   {name}, per parent, in the domain / flagged: d cov68/90 "
          f"{g('mean_nn_distance_cov68_in_domain')} / {g('mean_nn_distance_cov90_in_domain')}, "
          f"{g('mean_nn_distance_cov68_flagged')} / {g('mean_nn_distance_cov90_flagged')}; charge cov68/90 "
          f"{g('charge_cov68_in_domain')} / {g('charge_cov90_in_domain')}, "
          f"{g('charge_cov68_flagged')} / {g('charge_cov90_flagged')} |", flush=True)
    d, c = "mean_nn_distance_cov68", "charge_cov68"
    print(f"|   {name}, 68 % coverage +- its standard error over groups: per parent d {g(d + '_per_parent')} +- "
          f"{g(d + '_per_parent_se')}, charge {g(c + '_per_parent')} +- {g(c + '_per_parent_se')}; families "
          f"alone (n={s.get(d + '_families_n', 0)}) d {g(d + '_families')} +- {g(d + '_families_se')}, charge "
          f"{g(c + '_families')} +- {g(c + '_families_se')} |", flush=True)


if __name__ == "__main__":
    main()
