"""Is the wurtzite family's spectrum a property of the network or of its same-species second shell?

The models call the ``wurtzite`` family (M2+ tetrahedra, left out with its type) five-coordinate,
and its sharp white line at E0 + 4-5 eV is unlike the hosts' tetrahedra. In the family every cation
is the absorber's element; a beamline sample (Co-doped ZnO) has the absorber dilute among Zn. This
computes both with FEFF10 (``reduced-v2``, ideal geometry, the FEFF cache reused) and plots them
post-edge normalized, printing the white line's height and place.

    python scripts/wurtzite_dopant.py [--element Co] [--out out/wurtzite_dopant.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xanes_agent.data.feff import REDUCED_V2_PARAMETERS, feff_input, run_feff  # noqa: E402
from xanes_agent.data.structures import FAMILY_BY_NAME, build  # noqa: E402
from xanes_agent.foundation.normalization import post_edge_normalize  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--element", default="Co", help="an absorber Shannon lists as tetrahedral M2+")
ap.add_argument("--cache", default=".cache/feff")
ap.add_argument("--out", default="out/wurtzite_dopant.png")
a = ap.parse_args()

wurtzite = FAMILY_BY_NAME["wurtzite"]
pure = build(wurtzite, a.element, 0)  # seed 0: the ideal, Shannon-scaled prototype
host = build(wurtzite, "Zn", 0).structure  # ZnO itself (its own prototype, scale 1)
host.make_supercell([3, 3, 2])  # 36 Zn: the absorber's cation neighbours are all Zn
dopant = next(i for i, site in enumerate(host) if site.specie.symbol == "Zn")
host.replace(dopant, a.element)

fig, ax = plt.subplots(figsize=(8, 4.5))
for label, structure, index, colour in [(f"{a.element}O wurtzite (the family)", pure.structure,
                                         pure.absorber_index, "C0"),
                                        (f"{a.element} dilute in ZnO", host, dopant, "C3")]:
    r = run_feff(feff_input(structure, index, REDUCED_V2_PARAMETERS, title=label), a.cache)
    if not r.ok:
        raise SystemExit(f"{label}: FEFF failed ({r.reason})")
    normalized = post_edge_normalize(r.energy, r.mu)  # finds E0 itself and returns it
    mu = normalized.mu
    x = r.energy - normalized.e0
    near = (x > 0) & (x < 15)
    peak = mu[near].argmax()
    print(f"{label}: white line {mu[near][peak]:.2f} at E0 + {x[near][peak]:.1f} eV")
    ax.plot(x, mu, color=colour, lw=1.5, label=label)
ax.set_xlim(-15, 60)
ax.set_xlabel("E - E0 (eV)")
ax.set_ylabel("mu (post-edge normalized)")
ax.set_title(f"{a.element} K edge, FEFF10 reduced-v2: wurtzite family against a dilute dopant in ZnO")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(a.out, dpi=110)
print(f"wrote {a.out}")
