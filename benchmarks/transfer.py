"""Out-of-family and cross-code evaluation: the honest score of a model change (issue 13).

    python benchmarks/transfer.py [--library LIB.npz] [--features polynomial pointwise]
                                  [--augment none experiment regressors] [--stretch 0 0.05 ...]
                                  [--weighting none parent]
                                  [--min-samples-leaf 1 5 ...] [--blur 0 2 ...]
                                  [--window START STOP N ...] [--neighbour-vote 0 0.5 ...]
                                  [--voters parent spectrum] [--vote-blur 0 2]
                                  [--out out/transfer]

Per element, on the project's FEFF10 spectra (``feff10-project``):

* **leave-family-out**: the prototype-family spectra only, each family held out in turn with the
  families of its structure type (:mod:`xanes_agent.data.frameworks`: the two spinels, the two
  perovskites, rocksalt and layered LiMO2, corundum and ilmenite, the two zircons go out together;
  what the library could do before it had real host structures);
* **leave-family-out, hosts in training**: each family (with its type) held out in turn, trained on
  the other families *and* the Materials Project host sites, less the hosts of the left-out type
  (a doped rocksalt, a perovskite; listed as ``hosts_left_out`` in the JSON): does a model that has
  seen real structures recognise a structure type it has never seen?
* **leave-parent-out**: every project spectrum, parent structures (families and Materials Project
  hosts, :func:`~xanes_agent.data.library.parent_groups`) split into 5 folds, each held out in turn;

and for Cu, across codes and parameter sets, with parents kept apart in 5 folds as well:

* **FEFF10 -> FEFF9**: trained on project FEFF10 Cu spectra, tested on the OmniXAS FEFF 9 Cu
  spectra (Materials Project-style parameters), scored on every site and on the sites of CN 4, 5
  and 6 alone (the library's scope: the project computes no others); and the reverse.

Printed per row: n, groups, CN balanced accuracy and accuracy beside the modal baseline (the
evaluated rows' most frequent class), distance MAE (A) and R^2 beside the baseline MAE (of the
evaluated rows' median), oxidation-state MAE beside its baseline. ``--augment experiment`` adds
experiment-like copies of the training spectra (:mod:`xanes_agent.models.realism`; test spectra
untouched), ``--augment regressors`` to the regressors' only (as the models train since session
36), ``--stretch`` their energy-scale spread about E0 (relative, uniform +-); ``--weighting
parent`` makes every parent structure weigh 1 in training; ``--blur`` smooths every spectrum
(training and test) on the grid to a common resolution; ``--window`` sets the model grid
(E0-relative; computed spectra are extended below the Fermi level with mu = 0, as in training,
:func:`~xanes_agent.models.features.extend_below_fermi`). Every combination given is run.
Writes a markdown table, a JSON file and a confusion-matrix PNG per configuration under ``--out``.
Each configuration is one seed x ``--trees`` trees per fold (a study-size ensemble differs by a
few hundredths).
"""

from __future__ import annotations

import argparse
import itertools
import json
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xanes_agent.data.frameworks import DEFAULT_CACHE
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
from xanes_agent.models.evaluation import (
    CN_CLASSES,
    TARGETS,
    WEIGHTINGS,
    EvalConfig,
    fit_predict,
    group_folds,
    out_of_group_predictions,
    summarize,
)
from xanes_agent.models.features import (
    DEFAULT_GRID,
    FEATURIZATIONS,
    Grid,
    edge_views,
    grid_blur,
    make_featurizer,
    spectra_to_grid,
    view_columns,
)
from xanes_agent.models.neighbours import VOTERS
from xanes_agent.models.realism import Realism, experiment_like_grid


class Prepared:
    """Grid spectra, features and labels of one subset, with experiment-like copies on demand."""

    def __init__(self, coll, featurizer, augment: str, seed: int = 0, grid: Grid = DEFAULT_GRID,
                 blur: float = 0.0, stretch: float = 0.0, copies: int = 1):
        self.coll = coll
        X, e0 = spectra_to_grid(coll.energy, coll.mu, grid)
        self.blur = lambda X: grid_blur(X, grid, blur)
        X = self.blur(X)
        self.ok = np.isfinite(e0) & (np.isfinite(X).mean(axis=1) > 0.9)
        self.X = X
        self.F = featurizer.transform(X)
        self.labels = {k: coll.labels[k] for k in TARGETS}
        self.groups = parent_groups(coll)
        self.copies = None
        self.cn_copies = augment == "experiment"  # "regressors": the CN classifier trains without them
        if augment != "none":
            Xc, src = experiment_like_grid(coll.energy, coll.mu, np.flatnonzero(self.ok),
                                           Realism(stretch=stretch, copies=copies), grid,
                                           rng=np.random.default_rng(seed))
            self.copies = (featurizer.transform(self.blur(Xc)), src)

    def training(self, rows: np.ndarray, copies: bool = True) -> tuple[np.ndarray, np.ndarray]:
        rows = rows[self.ok[rows]]
        if self.copies is None or not copies:
            return self.F[rows], rows
        Fc, src = self.copies
        keep = np.isin(src, rows)
        return np.vstack([self.F[rows], Fc[keep]]), np.concatenate([rows, src[keep]])


def target_groups(prep: Prepared, labels: dict) -> list[tuple[dict, bool]]:
    """(labels, trained with the copies) per group of targets: one group, unless the copies are
    the regressors' only; then the CN classifier (last, so its probabilities are the ones kept)
    trains on the spectra as they are."""
    if prep.copies is None or prep.cn_copies:
        return [(labels, True)]
    cn = "coordination_number"
    return [({k: v for k, v in labels.items() if k != cn}, True), ({cn: labels[cn]}, False)]


def _row(name: str, s, n_groups: int) -> str:
    m = s.metrics
    f = lambda k, fmt="{:.2f}": fmt.format(m[k]) if k in m else "-"  # noqa: E731
    return (f"| {name} | {m.get('cn_n', 0)} | {n_groups} | {f('cn_balanced_accuracy')} | {f('cn_accuracy')} "
            f"| {f('cn_modal_baseline')} | {f('distance_mae', '{:.3f}')} | {f('distance_baseline_mae', '{:.3f}')} "
            f"| {f('distance_r2')} | {f('ox_mae')} | {f('ox_baseline_mae')} |")


HEADER = ("| evaluation | n | groups | CN bal. acc. | CN acc. | CN modal | d MAE (A) | d base MAE | d R^2 "
          "| ox MAE | ox base MAE |\n|---|---|---|---|---|---|---|---|---|---|---|")


def cn_called_by_group(groups: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """Per group (a family): how many of its spectra of each true CN were called 4, 5, 6."""
    out: dict[str, dict] = {}
    for g in np.unique(groups):
        for cn in CN_CLASSES:
            m = (groups == g) & (y == cn) & np.isfinite(pred)
            if m.any():
                out[f"{g} CN {cn}"] = {str(c): int((pred[m] == c).sum()) for c in CN_CLASSES}
    return out


def within(prep: Prepared, rows: np.ndarray, folds: np.ndarray, cfg: EvalConfig,
           excluded: dict[int, np.ndarray] | None = None, by_group: bool = False):
    """Out-of-fold predictions on ``rows`` of ``prep`` (folds given per row of ``rows``;
    ``excluded[f]``: rows of ``rows`` kept out of fold f's training as well). With ``by_group``
    the summary's metrics carry ``cn_called_by_group`` for the evaluated rows."""
    sub_F = prep.F[rows]
    labels = {k: v[rows] for k, v in prep.labels.items()}

    pred: dict[str, np.ndarray] = {}
    for targets, copies in target_groups(prep, labels):
        def transform(train_local, copies=copies):
            F, src = prep.training(rows[train_local], copies)
            local = np.searchsorted(rows, src)  # rows is sorted
            return F, local

        pred.update(out_of_group_predictions(sub_F, targets, folds, cfg, train_transform=transform,
                                             groups=prep.groups[rows], excluded=excluded, spectra=prep.X[rows]))
    keep = prep.ok[rows] & (folds >= 0)  # negative fold: training only, never evaluated
    s = summarize({k: v[keep] for k, v in labels.items()}, {k: v[keep] for k, v in pred.items()})
    if by_group and "coordination_number" in pred:
        s.metrics["cn_called_by_group"] = cn_called_by_group(
            prep.groups[rows][keep].astype(str), labels["coordination_number"][keep], pred["coordination_number"][keep])
    return s


def missed(s, share: float = 0.5) -> str:
    """The groups whose spectra of one CN were mostly called another, e.g. ``family:pyramidal_112
    CN 5 called 4/5/6: 0/0/69``."""
    parts = [f"{k} called 4/5/6: {'/'.join(str(v[str(c)]) for c in CN_CLASSES)}"
             for k, v in s.metrics.get("cn_called_by_group", {}).items()
             if v[k.rsplit(" ", 1)[1]] < share * sum(v.values())]
    return "; ".join(parts) or "none"


def across(train: Prepared, test: Prepared, n_folds: int, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """Train on ``train``, predict ``test``, with parent structures never on both sides (NaN
    where a test spectrum could not be prepared)."""
    folds_tr = group_folds(train.groups, n_folds)
    folds_te = group_folds(test.groups, n_folds)
    preds = {k: np.full(len(test.F), np.nan) for k in TARGETS}
    for f in range(n_folds):
        te = np.flatnonzero((folds_te == f) & test.ok)
        tr = np.flatnonzero(folds_tr != f)
        if not len(te):
            continue
        for targets, copies in target_groups(train, train.labels):
            Ftr, src = train.training(tr, copies)
            got = fit_predict(Ftr, {k: v[src] for k, v in targets.items()}, test.F[te], cfg, train.groups[src],
                              (train.X[src], test.X[te]))
            for k in TARGETS:
                if k in got:
                    preds[k][te] = got[k]
    return preds


def scored(test: Prepared, preds: dict[str, np.ndarray], in_scope: bool = False):
    """Metrics of ``preds`` on ``test``; with ``in_scope`` only on its sites of the CN classes the
    library holds (4, 5, 6: the project computes no others, while OmniXAS holds Cu sites of CN
    1-3 and 8-12 too, whose distances lie beyond any training spectrum's)."""
    ok = test.ok & np.isin(test.labels["coordination_number"], CN_CLASSES) if in_scope else test.ok
    return summarize({k: v[ok] for k, v in test.labels.items()}, {k: v[ok] for k, v in preds.items()})


def plot_confusions(confusions: dict[str, np.ndarray], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(confusions)
    cols = 3
    fig, axes = plt.subplots(int(np.ceil(n / cols)), cols, figsize=(3.3 * cols, 3.1 * np.ceil(n / cols)),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, c) in zip(axes.ravel(), confusions.items()):
        frac = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
        ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{c[i, j]}", ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(3), [str(k) for k in CN_CLASSES])
        ax.set_yticks(range(3), [str(k) for k in CN_CLASSES])
        ax.set_xlabel("predicted CN")
        ax.set_ylabel("true CN")
        bal = np.mean(np.diag(frac)[c.sum(axis=1) > 0])
        ax.set_title(f"{name}  (bal. acc. {bal:.2f})", fontsize=8)
    fig.suptitle(textwrap.fill(title, 90), fontsize=10)  # the configuration tag is long: wrapped, not cut
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def with_edge_view(cfg: EvalConfig, feat, edge_view: float, grid: Grid = DEFAULT_GRID) -> EvalConfig:
    """``cfg`` as a committee of two views, as many trees in all: the whole window, and the
    features up to E0 + ``edge_view`` eV alone (the models' CN classifier, ``--edge-view``)."""
    subsets = view_columns(feat, edge_views(edge_view, grid), grid)
    return replace(cfg, feature_subsets=tuple(tuple(int(i) for i in c) for c in subsets),
                   n_seeds=2 * cfg.n_seeds, n_estimators=max(1, cfg.n_estimators // 2))


def run(lib, features: str, augment: str, elements, n_folds: int, cfg: EvalConfig, out: Path,
        grid: Grid = DEFAULT_GRID, blur: float = 0.0, stretch: float = 0.0, edge_view: float = 0.0,
        copies: int = 1) -> str:
    feat = make_featurizer(features, grid)
    if edge_view:
        cfg = with_edge_view(cfg, feat, edge_view, grid)
    opts = dict(grid=grid, blur=blur, stretch=stretch, copies=copies)  # how spectra are prepared
    vote = (f"a 5-neighbour CN vote at {cfg.neighbour_vote:g}, each {cfg.voters} voting"
            f"{f' on spectra blurred {cfg.vote_blur:g} eV' if cfg.vote_blur else ''}, " if cfg.neighbour_vote else "")
    made = f"{copies} experiment-like training copies each{f' stretched +-{stretch:g}' if stretch else ''}"
    made += " for the regressors only" if augment == "regressors" else ""
    tag = (f"{features}, {made if augment != 'none' else 'clean training spectra'}, "
           f"{'extremely randomized' if cfg.regressor_trees == 'extra' else 'random-forest'} regressors, "
           f"{'each parent structure weighing 1' if cfg.weighting == 'parent' else 'each spectrum weighing 1'}, "
           f"min_samples_leaf {cfg.min_samples_leaf}, "
           f"{vote}"
           f"{f'every spectrum blurred {blur:g} eV FWHM, ' if blur > 0 else ''}"
           f"{f'half the trees on E0{grid.start:+g}..E0{edge_view:+g} eV alone, ' if edge_view else ''}"
           f"window E0{grid.start:+g}..E0{grid.stop:+g} eV ({grid.n} points)")
    lines = [f"### {tag}", "", HEADER]
    record: dict[str, dict] = {}
    confusions: dict[str, np.ndarray] = {}
    project = lib.where(source=PROJECT_SOURCE)
    misses: list[str] = []  # families left out whose CN was mostly missed (hosts in training)
    for el in elements:
        sub = project.where(element=el)
        if not len(sub):
            continue
        prep = Prepared(sub, feat, augment, **opts)
        is_family = np.char.startswith(prep.groups.astype(str), "family:")
        fam = np.flatnonzero(is_family)
        rows = np.arange(len(sub))
        if len(fam):
            # a family goes out with its structure type (the library's table: the families of one
            # framework together, and, hosts in training, the host structures of that framework)
            types = type_groups(sub)
            type_names, fam_folds = np.unique(types[fam], return_inverse=True)
            s = within(prep, fam, fam_folds, cfg, by_group=True)
            lines.append(_row(f"{el} leave-family-out", s, len(type_names)))
            record[f"{el} leave-family-out"] = s.metrics
            print(lines[-1], flush=True)
            if len(fam) < len(sub):  # hosts train; each family is predicted by a model without its type
                folds = np.full(len(sub), -1)
                folds[fam] = fam_folds
                excluded = {f: ~is_family & (types == t) for f, t in enumerate(type_names)}
                s = within(prep, rows, folds, cfg, excluded, by_group=True)
                s.metrics["hosts_left_out"] = {t.removeprefix("type:"): int(excluded[f].sum())
                                               for f, t in enumerate(type_names)}
                lines.append(_row(f"{el} leave-family-out, hosts in training", s, len(type_names)))
                record[f"{el} leave-family-out, hosts in training"] = s.metrics
                print(lines[-1], flush=True)
                misses.append(f"* {el}: {missed(s)}")
                if s.confusion is not None:
                    confusions[f"{el} family out, hosts in training"] = s.confusion
        if len(fam) < len(sub):  # real host structures present: parents held out in folds
            s = within(prep, rows, group_folds(prep.groups, n_folds), cfg)
            lines.append(_row(f"{el} leave-parent-out", s, len(np.unique(prep.groups))))
            record[f"{el} leave-parent-out"] = s.metrics
            if s.confusion is not None:
                confusions[f"{el} parent out"] = s.confusion
            print(lines[-1], flush=True)
    omni = lib.where(source=OMNIXAS_SOURCE, element="Cu")
    cu = project.where(element="Cu")
    if len(omni) and len(cu) and "Cu" in elements:
        p_cu = Prepared(cu, feat, augment, **opts)
        p_omni = Prepared(omni, feat, augment="none", **opts)
        pred = across(p_cu, p_omni, n_folds, cfg)
        for name, in_scope in (("Cu FEFF10 -> OmniXAS FEFF9", False),
                               ("Cu FEFF10 -> OmniXAS FEFF9, CN 4/5/6 sites", True)):
            s = scored(p_omni, pred, in_scope)
            lines.append(_row(name, s, len(np.unique(p_omni.groups))))
            record[name] = s.metrics
            print(lines[-1], flush=True)
        confusions["Cu FEFF10->FEFF9"] = s.confusion
        p_omni_tr = Prepared(omni, feat, augment, **opts)
        p_cu_test = Prepared(cu, feat, augment="none", **opts)
        s = scored(p_cu_test, across(p_omni_tr, p_cu_test, n_folds, cfg))
        lines.append(_row("Cu OmniXAS FEFF9 -> FEFF10", s, len(np.unique(p_cu.groups))))
        record["Cu OmniXAS FEFF9 -> FEFF10"] = s.metrics
        print(lines[-1], flush=True)
    if misses:
        lines += ["", "Families left out (hosts in training) whose CN was mostly missed:", "", *misses]
    kind = "clean" if augment == "none" else f"{augment}{copies}" + (f"_stretch{stretch:g}" if stretch else "")
    slug = (f"{features}_{kind}_{cfg.weighting}_leaf{cfg.min_samples_leaf}_{cfg.regressor_trees}_"
            f"{f'vote{cfg.neighbour_vote:g}{cfg.voters}_' if cfg.neighbour_vote else ''}"
            f"{f'voteblur{cfg.vote_blur:g}_' if cfg.neighbour_vote and cfg.vote_blur else ''}"
            f"{f'edgeview{edge_view:g}_' if edge_view else ''}"
            f"blur{blur:g}_{grid.start:g}_{grid.stop:g}_{grid.n}")
    plot_confusions(confusions, f"CN confusion out of family/parent ({tag})", out / f"confusion_{slug}.png")
    (out / f"transfer_{slug}.json").write_text(json.dumps(record, indent=1))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default=None)
    ap.add_argument("--features", nargs="+", default=["polynomial"], choices=FEATURIZATIONS)
    ap.add_argument("--augment", nargs="+", default=["none"], choices=("none", "experiment", "regressors"),
                    help="experiment-like training copies: none, for every model, or for the regressors only "
                         "(the CN classifier trains on the spectra as they are; the models' way since session 36)")
    ap.add_argument("--copies", type=int, default=1,
                    help="experiment-like copies per training spectrum with --augment (1: the models'; the "
                         "benchmark's runs before session 37 made 2)")
    ap.add_argument("--regressor-trees", nargs="+", default=["random"], choices=("random", "extra"),
                    help="the regressors' trees: random forests or extremely randomized trees (the models' since "
                         "session 36); every choice is run")
    ap.add_argument("--stretch", type=float, nargs="+", default=[0.0],
                    help="with --augment experiment: relative energy-scale spread of the copies about E0 "
                         "(uniform +-; 0: none)")
    ap.add_argument("--elements", nargs="+", default=list(ELEMENTS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--min-samples-leaf", type=int, nargs="+", default=[1],
                    help="forest leaf size(s) to compare (larger: smoother forests that memorize families less)")
    ap.add_argument("--weighting", nargs="+", default=["none"], choices=WEIGHTINGS,
                    help="parent: every parent structure weighs 1 in training (families of near-copies count once)")
    ap.add_argument("--blur", type=float, nargs="+", default=[0.0],
                    help="Gaussian FWHM (eV) applied on the grid to every spectrum, training and test alike "
                         "(a common resolution; 0: none)")
    ap.add_argument("--window", nargs=3, action="append", metavar=("START", "STOP", "N"),
                    help="model grid relative to E0 (eV, eV, points); repeat to compare windows "
                         "(default: the models' -15 45 120; the study's was -5 45 100)")
    ap.add_argument("--neighbour-vote", type=float, nargs="+", default=[0.0],
                    help="share(s) of a 5-nearest-neighbour vote among the training grid spectra in the CN "
                         "probability (0: the forests alone; models.neighbours)")
    ap.add_argument("--voters", nargs="+", default=["parent"], choices=VOTERS,
                    help="who votes: each parent structure once per CN (the models'), or each spectrum "
                         "(session 27's vote); every choice is run with every share above 0")
    ap.add_argument("--vote-blur", type=float, nargs="+", default=[0.0],
                    help="Gaussian FWHM(s), eV, the vote blurs spectra by before comparing them (0: as they are, "
                         "the models' default); every choice is run with every share above 0")
    ap.add_argument("--framework-cache", default=DEFAULT_CACHE,
                    help="for a library without its structure-type table (built before session 26): each "
                         "host structure's family structure type, kept between runs (JSON)")
    ap.add_argument("--edge-view", type=float, nargs="+", default=[0.0], metavar="STOP",
                    help="the CN classifier as a committee of two views (models.ensemble): half the trees on the "
                         "whole window, half on the features below E0 + STOP eV alone (the pre-edge and edge; the "
                         "regressors see every feature, in two seeds of half the trees); 0: none")
    ap.add_argument("--out", default="out/transfer")
    a = ap.parse_args()
    lib = read_library(a.library) if a.library else load_bundled_library()
    lib = with_structure_types(lib, cache_file=a.framework_cache)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfgs = [EvalConfig(n_estimators=a.trees, weighting=w, min_samples_leaf=leaf, neighbour_vote=v, voters=who,
                       vote_blur=b, regressor_trees=rt)
            for w in a.weighting for leaf in a.min_samples_leaf for v in a.neighbour_vote
            for who in (a.voters if v else a.voters[:1]) for b in (a.vote_blur if v else [0.0])
            for rt in a.regressor_trees]
    grids = [Grid(float(s), float(e), int(n)) for s, e, n in a.window] if a.window else [DEFAULT_GRID]
    tables = []
    runs = itertools.product(grids, cfgs, a.blur, a.features, a.augment, a.stretch, a.edge_view)
    for grid, cfg, blur, features, aug, stretch, edge_view in runs:
        if aug == "none" and stretch != a.stretch[0]:
            continue  # clean spectra have no copies to stretch: one clean run
        t0 = time.perf_counter()
        cfg = replace(cfg, vote_grid=grid)  # a blurred vote blurs on the grid the spectra are on
        tables.append(run(lib, features, aug, a.elements, a.folds, cfg, out, grid, blur,
                          stretch if aug != "none" else 0.0, edge_view, a.copies))
        print(f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
    text = "\n\n".join(tables)
    (out / "transfer.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out}/transfer.md, transfer_*.json, confusion_*.png")


if __name__ == "__main__":
    main()
