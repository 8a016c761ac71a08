"""A matplotlib view of the agent, read at a glance: what was measured, what the model says with
how sure it is, and how the answer settled.

Top row: the spectrum so far (model window shaded, E0 marked, keyed); the CN probabilities
(calibrated, with the forests' raw probabilities as outlines); the importance map with the measured
(green) and proposed (orange) ranges. Bottom row, against the number of points measured: the
calibrated probability of the predicted CN, the distance and the charge label with their 68 % and
90 % calibrated intervals, and the true values where the start document carries them (the
simulator's ``sample_truth``). Out-of-domain updates are marked with a red x. The title names the
run, the sample, the model and the stop reason. An oxidation state is drawn without a unit (it has
none); "e" only for charges that are charges.

Works live (``LiveAgentView`` redraws on each agent event) and saves a PNG at the end of a run
(:func:`save_png`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.properties import PROPERTIES, REGRESSORS
from ..models.calibration import domain_words
from .stopping import DEFAULT_STABILITY


def _unit(model: Any, name: str) -> str:
    return PROPERTIES[name].unit_for(model.properties[name].label, display=True)


def _regressors(model: Any) -> list[str]:
    """The model's regressors, in the registry's order: one history panel each."""
    return [n for n in REGRESSORS if n in model.properties]


def draw(fig, run: Any) -> None:
    """Draw a :class:`~xanes_agent.agent.agent.RunSnapshot` (``agent.snapshot()``) on ``fig`` (cleared first)."""
    fig.clf()
    model = run.model
    # top: spectrum, prediction, importance; below, how the answer settled: CN, then one panel per
    # regressor the model has (a 12-column grid shares the width either way)
    grid = fig.add_gridspec(2, 12)
    ax_s, ax_p, ax_i = (fig.add_subplot(grid[0, 4 * i:4 * i + 4]) for i in range(3))
    n_hist = 1 + len(_regressors(model))
    w = 12 // n_hist
    history_axes = [fig.add_subplot(grid[1, w * i:w * i + w]) for i in range(n_hist)]
    e, mu = run.energy, run.mu
    s = run.state
    ax_s.plot(e, mu, "o", ms=2.5, label="measured")
    ax_s.set_xlabel("energy (eV)")
    ax_s.set_ylabel("mu (measured)")
    sub = f"{run.element} {run.edge}: {len(e)} points"
    if s is not None and s.e0 is not None:
        ax_s.axvline(s.e0, color="k", lw=0.8, ls=":", label=f"E0 {s.e0:.1f} eV")
        g = model.grid.energies + s.e0
        ax_s.axvspan(g[0], g[-1], color="0.9", zorder=0, label="model window")
        sub += f", window covered {s.coverage_fraction:.0%}"
    ax_s.legend(fontsize=7, loc="lower right")
    ax_s.set_title(sub, fontsize=9)
    calibrated = False
    if s is not None and s.predictions:
        cn = s.predictions.get("coordination_number")
        if cn is not None:
            classes = np.asarray(cn["classes"])
            names = [f"CN{int(c)}" for c in classes]
            calibrated = bool(cn.get("calibrated", False))
            ax_p.bar(names, cn["proba"], color="tab:blue", alpha=0.7,
                     label="calibrated" if calibrated else "seed mean (not calibrated)")
            if "raw_proba" in cn:
                ax_p.bar(names, cn["raw_proba"], fill=False, edgecolor="k", lw=0.8, label="before calibration")
            ax_p.set_ylim(0, 1)
            ax_p.set_ylabel("P(CN)")
            ax_p.legend(fontsize=7, loc="upper left")
            ax_p.set_title(f"CN {int(cn['prediction'])}, P = {cn['probability']:.2f}", fontsize=9)
        txt = []
        for name in REGRESSORS:
            p = s.predictions.get(name)
            if p is not None:
                label = model.properties[name].label.replace("_", " ")
                iv = p.get("interval90")
                span = f" (90 %: {iv[0]:.2f}-{iv[1]:.2f})" if iv is not None else ""
                txt.append(f"{label}: {p['prediction']:.3f} ± {p['std']:.3f} {_unit(model, name)}{span}")
        first = next(iter(s.predictions.values()))
        if "in_domain" in first:
            txt.append(domain_words(first))
        ax_p.text(0.98, 0.98, "\n".join(txt), transform=ax_p.transAxes, va="top", ha="right", fontsize=7,
                  color="k" if first.get("in_domain", True) else "tab:red")
    fine = np.linspace(model.grid.start, model.grid.stop, 500)
    off = s.e0 if (s is not None and s.e0 is not None) else 0.0
    ax_i.plot(fine + off, model.importance_map(fine), "k-", lw=1)
    for p in run.proposals:
        ax_i.axvspan(p.start, p.stop, color="tab:orange", alpha=0.35)
    if s is not None and s.e0 is not None:
        g = model.grid.energies + off
        ax_i.fill_between(g, 0, np.where(s.coverage, model.importance_map(model.grid.energies), np.nan),
                          color="tab:green", alpha=0.3, step="mid")
    ax_i.set_xlabel("energy (eV)" + ("" if off else " rel. E0"))
    ax_i.set_ylabel("importance density (1/eV)")
    ax_i.set_title("importance; measured (green), proposed (orange)", fontsize=9)
    _draw_history(history_axes, run, model)
    stop = f"\nstopped: {run.stop_reason}" if run.stop_reason else ""  # a line of its own: reasons run long
    fig.suptitle(f"run {run.uid[:8]}" + (f", sample {run.sample}" if run.sample else "") +
                 f"; model {model.element} {model.featurization}, {model.n_spectra} spectra"
                 f" ({'calibrated out of family' if calibrated else 'seed spread only'}){stop}", fontsize=9)
    fig.tight_layout()


def _draw_history(axes, run: Any, model: Any) -> None:
    """The answer against the number of points: CN probability, distance and charge with intervals."""
    h = [d for d in run.history if d.get("edge_located")]
    truth = run.truth
    n = np.array([d["n_points"] for d in h], float)
    ood = np.array([not d.get("in_domain", True) for d in h], bool)
    ax = axes[0]
    if h and "cn_probability" in h[0]:
        p = np.array([d["cn_probability"] for d in h], float)
        cn = np.array([d["cn"] for d in h])
        for c in np.unique(cn):
            sel = cn == c
            ax.plot(n[sel], p[sel], "o", ms=3, label=f"predicted CN {int(c)}")
        ax.plot(n[ood], p[ood], "x", color="tab:red", ms=5, label="out of domain")
        # below this a CN is not a decision: the stop rules' line (stable, or settled undecided), the
        # run's own where its plan said it, else the default every stop rule starts from
        line = run.decision_probability or DEFAULT_STABILITY["cn_probability"]
        ax.axhline(line, color="0.5", ls=":", lw=1, label=f"decision (P >= {line:g})")
        if "coordination_number" in truth:
            ax.set_title(f"P(predicted CN); true CN {truth['coordination_number']:g}", fontsize=9)
        else:
            ax.set_title("P(predicted CN), calibrated", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    ax.set_xlabel("points measured")
    for ax, name in zip(axes[1:], _regressors(model)):
        short = PROPERTIES[name].short
        ax.set_xlabel("points measured")
        if not h or short not in h[0]:
            continue
        y = np.array([d[short] for d in h], float)
        for lvl, alpha in ((90, 0.15), (68, 0.3)):
            lo = np.array([d.get(f"{short}_lo{lvl}", np.nan) for d in h], float)
            hi = np.array([d.get(f"{short}_hi{lvl}", np.nan) for d in h], float)
            if np.isfinite(lo).any():
                ax.fill_between(n, lo, hi, color="tab:blue", alpha=alpha, step="post", label=f"{lvl} % interval")
        ax.plot(n, y, "-", color="tab:blue", lw=1.2, label="prediction")
        ax.plot(n[ood], y[ood], "x", color="tab:red", ms=5)
        label = model.properties[name].label
        if label in truth:
            ax.axhline(truth[label], color="k", ls="--", lw=1, label="true")
        unit = _unit(model, name)
        ax.set_ylabel(label.replace("_", " ") + (f" ({unit})" if unit else ""))
        ax.legend(fontsize=7)


def save_png(run: Any, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 8))
    draw(fig, run)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


class LiveAgentView:
    """A figure that follows an agent live: ``agent.subscribe(LiveAgentView(agent))`` redraws on
    every ``every``-th update (in IPython with an interactive backend), from ``agent.snapshot()``."""

    def __init__(self, agent: Any, fig: Any = None, every: int = 1) -> None:
        import matplotlib.pyplot as plt

        self.agent = agent
        self.fig = fig or plt.figure(figsize=(15, 8))
        self.every = max(1, int(every))
        self.n_drawn = 0
        self._n = 0

    def __call__(self, name: str, doc: dict) -> None:
        if name not in ("event", "stop"):
            return
        self._n += 1
        snap = self.agent.snapshot()
        if snap is None or (name == "event" and self._n % self.every):
            return
        draw(self.fig, snap)
        self.n_drawn += 1
        self.fig.canvas.draw_idle()


def prediction_png(rec: dict, energy: np.ndarray, mu: np.ndarray, model: Any, path: str | Path,
                   lines: list[str]) -> Path:
    """One measured spectrum's figure (``predict --png``): mu against energy (eV) with E0, the
    model window and the prediction ``lines`` written on it; ``rec`` is the ``predict`` record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    ax.plot(energy, mu, ".-", ms=3, lw=0.8, color="k", label=f"mu ({rec['signal']})")
    if rec.get("e0"):
        e0 = rec["e0"]
        ax.axvspan(e0 + model.grid.start, e0 + model.grid.stop, color="tab:blue", alpha=0.12,
                   label=f"model window E0{model.grid.start:+g}..{model.grid.stop:+g} eV")
        ax.axvline(e0, color="tab:red", lw=1, label=f"E0 {e0:.1f} eV")
    text = "\n".join(line.strip() for line in lines if not line.strip().startswith("note"))
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
    return Path(path)
