"""A matplotlib view of the agent: spectrum so far, predictions with seed error bars, importance map
with the proposed ranges shaded. Works live (``LiveAgentView`` redraws on each agent event) and
saves a PNG at the end of a run (:func:`save_png`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def draw(fig, run: Any) -> None:
    """Draw the state of a :class:`~xanes_agent.agent.agent.RunState` on ``fig`` (cleared first)."""
    fig.clf()
    ax_s, ax_p, ax_i = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    e, mu = run.spectrum.arrays()
    s = run.last
    model = run.predictor.model
    ax_s.plot(e, mu, "o", ms=2.5)
    ax_s.set_xlabel("energy (eV)")
    ax_s.set_ylabel("mu (measured)")
    title = f"{run.element} {run.edge}: {len(e)} points"
    if s is not None and s.e0 is not None:
        ax_s.axvline(s.e0, color="k", lw=0.8, ls=":")
        g = model.grid.energies + s.e0
        ax_s.axvspan(g[0], g[-1], color="0.9", zorder=0)
        title += f", coverage {s.coverage_fraction:.0%}"
    ax_s.set_title(title, fontsize=9)
    if s is not None and s.predictions:
        cn = s.predictions.get("coordination_number")
        if cn is not None:
            classes = np.asarray(cn["classes"])
            ax_p.bar([f"CN{int(c)}" for c in classes], cn["proba"], color="tab:blue", alpha=0.7)
            ax_p.set_ylim(0, 1)
            ax_p.set_ylabel("P(CN)  (seed mean)")
            ax_p.set_title(f"CN {int(cn['prediction'])} (p={cn['probability']:.2f} ± {cn['spread']:.2f})", fontsize=9)
        txt = []
        for name in ("mean_nn_distance", "charge"):
            p = s.predictions.get(name)
            if p is not None:
                unit = "Å" if name == "mean_nn_distance" else "e"
                label = model.properties[name].label
                txt.append(f"{label}: {p['prediction']:.3f} ± {p['std']:.3f} {unit}")
        ax_p.text(0.02, 0.98, "\n".join(txt), transform=ax_p.transAxes, va="top", fontsize=8)
    fine = np.linspace(model.grid.start, model.grid.stop, 500)
    off = s.e0 if (s is not None and s.e0 is not None) else 0.0
    ax_i.plot(fine + off, model.importance_map(fine), "k-", lw=1)
    for p in run.proposals:
        ax_i.axvspan(p.start, p.stop, color="tab:orange", alpha=0.35)
    if s is not None and s.e0 is not None:
        cov = s.coverage
        g = model.grid.energies + off
        ax_i.fill_between(g, 0, np.where(cov, model.importance_map(model.grid.energies), np.nan), color="tab:green",
                          alpha=0.3, step="mid")
    ax_i.set_xlabel("energy (eV)" + ("" if off else " rel. E0"))
    ax_i.set_ylabel("importance density (1/eV)")
    ax_i.set_title("importance; measured (green), proposed (orange)", fontsize=9)
    fig.tight_layout()


def save_png(run: Any, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 4))
    draw(fig, run)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


class LiveAgentView:
    """Subscribe to an agent (``agent.subscribe(view)``) to redraw a figure on each update."""

    def __init__(self, agent: Any, fig: Any = None, every: int = 1) -> None:
        import matplotlib.pyplot as plt

        self.agent = agent
        self.fig = fig or plt.figure(figsize=(14, 4))
        self.every = every
        self._n = 0

    def __call__(self, name: str, doc: dict) -> None:
        if name != "event" or self.agent.run is None:
            return
        self._n += 1
        if self._n % self.every == 0:
            draw(self.fig, self.agent.run)
            self.fig.canvas.draw_idle()
