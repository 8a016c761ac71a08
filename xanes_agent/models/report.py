"""Figures and a markdown summary in the spirit of Torrisi et al. (2020).

``performance.png``   per element: CN accuracy, distance R^2 and charge R^2, pointwise vs polynomial,
                      seed std as error bars, the modal-class baseline as a marker
``parity_<El>.png``   predicted vs true distance and charge on the held-out split
``importance_<El>.png`` white-line energy distribution, pointwise importance vs energy, and the 12 most
                      important polynomial features as bars spanning their energy range, coloured
                      by coefficient order
``coverage.png``      held-out CN accuracy vs the fraction of the window measured (low-energy side)
``summary.md``        the metrics table
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.properties import PROPERTIES, REGRESSORS
from .model import ElementModel

ORDER_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metrics_table(models: Sequence[ElementModel]) -> str:
    rows = ["| element | features | n (test) | CN accuracy | modal baseline | distance R^2 | distance MAE (A) "
            "| charge label | charge R^2 | charge MAE |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(models, key=lambda m: (m.element, m.featurization)):
        cn = m.properties.get("coordination_number")
        d = m.properties.get("mean_nn_distance")
        q = m.properties.get("charge")

        def pm(metrics, key):
            if not metrics or f"{key}_mean" not in metrics:
                return "-"
            return f"{metrics[f'{key}_mean']:.3f} ± {metrics[f'{key}_std']:.3f}"

        rows.append("| " + " | ".join([
            m.element, m.featurization, str(cn.metrics.get("n_test", "-") if cn else "-"),
            pm(cn.metrics if cn else None, "accuracy"),
            f"{cn.metrics.get('modal_baseline_accuracy', float('nan')):.3f}" if cn and cn.metrics else "-",
            pm(d.metrics if d else None, "r2"), pm(d.metrics if d else None, "mae"),
            q.label if q else "-", pm(q.metrics if q else None, "r2"), pm(q.metrics if q else None, "mae"),
        ]) + " |")
    return "\n".join(rows)


def performance_figure(models: Sequence[ElementModel], path: Path) -> Path:
    plt = _plt()
    elements = sorted({m.element for m in models})
    feats = sorted({m.featurization for m in models})
    panels = [("coordination_number", "accuracy", "CN accuracy"), ("mean_nn_distance", "r2", "distance $R^2$"),
              ("charge", "r2", "charge $R^2$")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    width = 0.8 / max(1, len(feats))
    x = np.arange(len(elements))
    for ax, (prop, key, title) in zip(axes, panels):
        for j, f in enumerate(feats):
            vals, errs = [], []
            for el in elements:
                m = next((m for m in models if m.element == el and m.featurization == f), None)
                met = m.properties[prop].metrics if m and prop in m.properties else {}
                vals.append(met.get(f"{key}_mean", np.nan))
                errs.append(met.get(f"{key}_std", 0.0))
            ax.bar(x + (j - (len(feats) - 1) / 2) * width, vals, width, yerr=errs, capsize=3, label=f)
        if prop == "coordination_number":
            base = []
            for el in elements:
                m = next((m for m in models if m.element == el and prop in m.properties), None)
                base.append(m.properties[prop].metrics.get("modal_baseline_accuracy", np.nan) if m else np.nan)
            ax.scatter(x, base, marker="_", s=400, color="k", zorder=5, label="modal baseline")
        ax.set_xticks(x, elements)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    seeds = sorted({int(m.config.get("n_seeds", 0)) for m in models} - {0})
    fig.suptitle("Held-out performance per element (error bars: std over "
                 f"{'/'.join(map(str, seeds)) or 'the'} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parity_figure(model: ElementModel, truth: dict[str, np.ndarray], preds: dict[str, dict[str, np.ndarray]],
                  path: Path, source: str = "") -> Path:
    """Predicted against true values of the spectra given; R^2 is of those points (``source``
    names which data they are, for the title)."""
    plt = _plt()
    props = [p for p in REGRESSORS if p in preds]
    fig, axes = plt.subplots(1, max(1, len(props)), figsize=(4.6 * max(1, len(props)), 4.2), squeeze=False)
    for ax, p in zip(axes[0], props):
        y, pr = truth[p], preds[p]
        ax.errorbar(y, pr["prediction"], yerr=pr["std"], fmt="o", ms=3, alpha=0.6, elinewidth=0.6)
        lo, hi = np.nanmin([y.min(), pr["prediction"].min()]), np.nanmax([y.max(), pr["prediction"].max()])
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        pm = model.properties[p]
        unit = PROPERTIES[p].unit_for(pm.label, display=True)
        ax.set_xlabel(f"true {pm.label}" + (f" ({unit})" if unit else ""))
        ax.set_ylabel("predicted" + (f" ({unit})" if unit else ""))
        ok = np.isfinite(y) & np.isfinite(pr["prediction"])
        r2 = (1.0 - np.sum((y[ok] - pr["prediction"][ok]) ** 2) / np.sum((y[ok] - y[ok].mean()) ** 2)
              if ok.sum() > 1 and np.ptp(y[ok]) > 0 else np.nan)
        where = f", {source}" if source else ""
        ax.set_title(f"{model.element} {pm.label}: $R^2$={r2:.2f} (n={int(ok.sum())}{where})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def importance_figure(poly: ElementModel | None, point: ElementModel | None, wl_energies: np.ndarray | None,
                      path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if wl_energies is not None and len(wl_energies):
        axes[0].hist(wl_energies[np.isfinite(wl_energies)], bins=30, color="0.4")
    axes[0].set_xlabel("white-line energy (eV rel. $E_0$)")
    axes[0].set_title("white-line energy distribution")
    if point is not None:
        g = point.grid.energies
        for name, pm in point.properties.items():
            axes[1].errorbar(g, pm.importances, yerr=pm.importances_std, lw=1, elinewidth=0.5, label=name)
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("energy (eV rel. $E_0$)")
    axes[1].set_ylabel("impurity importance")
    axes[1].set_title("pointwise importance")
    if poly is not None and "coordination_number" in poly.properties:
        pm = poly.properties["coordination_number"]
        top = np.argsort(pm.importances)[::-1][:12]
        for rank, i in enumerate(top):
            lo, hi = poly.energy_ranges[i]
            name = str(poly.feature_names[i])
            order = int(name.split("_a")[1][0]) if "_a" in name else -1
            colour = ORDER_COLOURS[order] if order >= 0 else "k"
            axes[2].barh(rank, hi - lo, left=lo, color=colour, alpha=0.8)
            axes[2].text(hi + 0.3, rank, f"{pm.importances[i]:.3f}", va="center", fontsize=7)
        axes[2].set_yticks(range(len(top)), [str(poly.feature_names[i]).split("[")[0] for i in top], fontsize=7)
        axes[2].invert_yaxis()
        from matplotlib.patches import Patch

        axes[2].legend(handles=[Patch(color=c, label=f"a{k}") for k, c in enumerate(ORDER_COLOURS)] +
                       [Patch(color="k", label="white line")], fontsize=7, loc="lower right")
    axes[2].set_xlabel("energy range (eV rel. $E_0$)")
    axes[2].set_title("top-12 polynomial features (CN)")
    el = (poly or point).element if (poly or point) else ""
    fig.suptitle(f"{el} K edge: where the models look")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coverage_figure(models: Sequence[ElementModel], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in sorted(models, key=lambda m: m.element):
        cc = m.coverage_curve
        if "coordination_number" in cc:
            ax.plot(np.array(cc["fractions"]) * 100, cc["coordination_number"], "o-",
                    label=f"{m.element} ({m.featurization})")
    ax.set_xlabel("window measured from the low-energy side (%)")
    ax.set_ylabel("held-out CN accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_bundle(model: ElementModel, coll: Any, permutation: int = 0) -> dict[str, dict[str, Any]]:
    """Metrics of ``model`` on the spectra of ``coll`` (its element only), per property: accuracy
    (CN) or R^2/MAE (distance in A, charge label); with ``permutation`` repeats also the ten most
    important features by permutation and by impurity (whole names: the energy range is what a
    feature means). Each property's dict carries ``label`` and ``n``."""
    from .features import spectra_to_grid
    from .training import CN_CLASSES, evaluate_property, permutation_importance

    coll = coll.where(element=model.element)
    X, e0 = spectra_to_grid(coll.energy, coll.mu, model.grid, model.normalization)
    F = model.featurize(X)
    results: dict[str, dict[str, Any]] = {}
    for name, pm in model.properties.items():
        y = coll.labels[pm.label]
        ok = np.isfinite(y) & np.isfinite(e0)
        if pm.kind == "classifier":
            ok &= np.isin(y, CN_CLASSES)
        if ok.sum() < 2:
            continue
        res = {"label": pm.label, "n": int(ok.sum()),
               **evaluate_property(pm, F[ok], y[ok], vote=model.vote if pm.kind == "classifier" else None,
                                   X_grid=X[ok])}
        if permutation:
            mean, std = permutation_importance(pm, F[ok], y[ok], n_repeats=permutation)
            top = np.argsort(mean)[::-1][:10]
            res["permutation_importance_top10"] = {str(model.feature_names[i]): [float(mean[i]), float(std[i])]
                                                   for i in top}
            res["impurity_importance_top10"] = [str(model.feature_names[i])
                                                for i in np.argsort(pm.importances)[::-1][:10]]
        results[name] = res
    return results


def write_report(models: Sequence[ElementModel], coll: Any, out: Path) -> list[Path]:
    """The report of ``models`` into folder ``out``: performance and coverage figures, per element a
    parity plot on ``coll``'s held-out split (titled with its sources) and an importance figure,
    and ``summary.md`` (the metrics table). Returns the files written."""
    from .features import spectra_to_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [performance_figure(models, out / "performance.png"), coverage_figure(models, out / "coverage.png")]
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
        written.append(parity_figure(
            ref, {k: v[ok] for k, v in truth.items()},
            {k: {kk: vv[ok] for kk, vv in v.items() if kk != "classes"} for k, v in preds.items()},
            out / f"parity_{el}.png", source=", ".join(sorted(set(test.source.tolist())))))
        wl = ref.featurize(X)[:, -1] if ref.featurization == "polynomial" else None
        written.append(importance_figure(poly, point, wl, out / f"importance_{el}.png"))
    (out / "summary.md").write_text("# xanes-agent model report\n\n" + metrics_table(models) + "\n")
    written.append(out / "summary.md")
    return written
