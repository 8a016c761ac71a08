"""Median spectrum per coordination number, prototype families against real host structures.

Why a model trained on one does not recognise the other: per element, the median post-edge
normalized spectrum (E0 on the main rise) of each CN, dashed for the project's prototype-family
spectra and solid for its Materials Project host sites; the count of spectra in the legend and the
model window's lower end (E0 - 5 eV) marked.

    python scripts/plot_family_vs_host.py [--library LIB.npz] [--out out/family_vs_host.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library, parent_groups  # noqa: E402
from xanes_agent.data.readers import read_library  # noqa: E402
from xanes_agent.foundation.edges import ELEMENTS  # noqa: E402
from xanes_agent.models.features import DEFAULT_GRID, Grid, spectra_to_grid  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--library", default=None, help="a library .npz (default: the bundled one)")
ap.add_argument("--out", default="out/family_vs_host.png")
a = ap.parse_args()
lib = (read_library(a.library) if a.library else load_bundled_library()).where(source=PROJECT_SOURCE)
grid = Grid(-15.0, 45.0, 121)
fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True)
colours = {4: "tab:blue", 5: "tab:orange", 6: "tab:green"}
for ax, el in zip(axes.flat, ELEMENTS):
    sub = lib.where(element=el)
    if not len(sub):
        ax.axis("off")
        continue
    X, _ = spectra_to_grid(sub.energy, sub.mu, grid)
    family = np.char.startswith(parent_groups(sub).astype(str), "family:")
    cn = sub.labels["coordination_number"]
    for c, col in colours.items():
        for fam, style, word in ((True, "--", "families"), (False, "-", "hosts")):
            rows = (cn == c) & (family == fam)
            covered = np.isfinite(X[rows]).sum(axis=0) >= 3
            if rows.sum() < 3:
                continue
            med = np.full(grid.n, np.nan)
            med[covered] = np.nanmedian(X[rows][:, covered], axis=0)
            ax.plot(grid.energies, med, style, color=col, lw=1.3, label=f"CN {c} {word} ({rows.sum()})")
    ax.axvline(DEFAULT_GRID.start, color="0.3", lw=0.6)
    ax.set_title(el)
    ax.set_xlabel("E - E0 (eV)")
    ax.legend(fontsize=7, loc="lower right")
axes[0, 0].set_ylabel("median normalized mu")
fig.suptitle("Prototype families (dashed) against Materials Project host sites (solid), median per CN; "
             "grey line: the model window's start")
fig.tight_layout()
fig.savefig(a.out, dpi=100)
print(f"wrote {a.out}")
