"""All spectra of the library per element (like Fig. 10 of Torrisi et al.), coloured by CN.

    python scripts/plot_library.py [--library LIB.npz] [--source feff10-project] [--out out/library_spectra.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xanes_agent.data.library import load_bundled_library  # noqa: E402
from xanes_agent.data.readers import read_library  # noqa: E402
from xanes_agent.foundation.normalization import post_edge_normalize  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--library", default=None, help="a library .npz (default: the bundled one)")
ap.add_argument("--source", default=None)
ap.add_argument("--out", default="out/library_spectra.png")
ap.add_argument("--max-per-element", type=int, default=400)
a = ap.parse_args()
lib = read_library(a.library) if a.library else load_bundled_library()
if a.source:
    lib = lib.where(source=a.source)
els = [e for e in ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu") if e in set(lib.element.tolist())]
fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True)
colours = {4: "tab:blue", 5: "tab:green", 6: "tab:red"}
for ax, el in zip(axes.flat, els):
    sub = lib.where(element=el)
    idx = np.random.default_rng(0).permutation(len(sub))[: a.max_per_element]
    for i in idx:
        n = post_edge_normalize(sub.energy[i], sub.mu[i])
        cn = sub.labels["coordination_number"][i]
        ax.plot(sub.energy[i] - n.e0, n.mu, lw=0.5, alpha=0.5, color=colours.get(int(cn) if cn == cn else 0, "0.6"))
    ax.set_title(f"{el} ({len(sub)} spectra)")
    ax.set_xlim(-15, 60)
    ax.set_xlabel("E - E0 (eV)")
for c, col in colours.items():
    axes.flat[0].plot([], [], color=col, label=f"CN {c}")
axes.flat[0].plot([], [], color="0.6", label="other CN")
axes.flat[0].legend(fontsize=8)
axes.flat[0].set_ylabel("mu (post-edge normalized)")
fig.suptitle("Library spectra per element" + (f" ({a.source})" if a.source else ""))
fig.tight_layout()
fig.savefig(a.out, dpi=100)
print(f"wrote {a.out}")
