"""Where two codes put the same site's near-edge features: FEFF10 (project) against OmniXAS FEFF 9.

The bundled library holds both codes' Cu K-edge spectra for the native Cu sites of the Materials
Project hosts the build uses. For each such pair, after post-edge normalization and E0 at the
maximum derivative, the FEFF 9 spectrum is matched to the FEFF10 one on E0-5..E0+45 eV by a stretch
s of E - E0 and a shift (grid search, least squares): s < 1 puts FEFF 9's features at lower
E - E0. Prints the rms difference before and after the match and percentiles of s and the shift,
and, as computed, the rms and mean (FEFF10 - FEFF 9) difference per band of E - E0 and the
median white-line height: where on the edge the two computations part.

    python scripts/code_energy_scale.py
"""

from __future__ import annotations

import numpy as np

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library
from xanes_agent.data.omnixas import SOURCE as OMNIXAS
from xanes_agent.foundation.normalization import normalize

STRETCHES = np.linspace(0.85, 1.15, 31)
SHIFTS = np.linspace(-4.0, 4.0, 33)  # eV
WINDOW = np.linspace(-5.0, 45.0, 201)  # eV relative to E0
BANDS = ((-5, 0), (0, 5), (5, 10), (10, 20), (20, 30), (30, 45))  # eV relative to E0


def pairs(project, omni) -> list[tuple[int, int]]:
    """(project row, OmniXAS row) of the same native site: ids ``mp-X_S-Cu-native`` and ``mp-X/S``."""
    where = {k: i for i, k in enumerate(omni.ids.tolist())}
    out = []
    for i, k in enumerate(project.ids.tolist()):
        if k.endswith("-Cu-native"):
            mid, site = k[: -len("-Cu-native")].rsplit("_", 1)
            if f"{mid}/{site}" in where:
                out.append((i, where[f"{mid}/{site}"]))
    return out


def relative(coll, i):
    e, m = np.asarray(coll.energy[i], float), np.asarray(coll.mu[i], float)
    nrm = normalize(e, m, "post_edge")
    return lambda x: np.interp(x, e - nrm.e0, nrm.mu)


def main() -> None:
    lib = load_bundled_library()
    project = lib.where(source=PROJECT_SOURCE, element="Cu")
    omni = lib.where(source=OMNIXAS, element="Cu")
    rows, diffs, peaks = [], [], []
    for i, j in pairs(project, omni):
        a, b = relative(project, i)(WINDOW), relative(omni, j)
        diffs.append(a - b(WINDOW))
        peaks.append((a.max(), b(WINDOW).max()))
        rms = np.array([[np.sqrt(np.mean((b(WINDOW * s + d) - a) ** 2)) for d in SHIFTS] for s in STRETCHES])
        k, l_ = np.unravel_index(np.argmin(rms), rms.shape)
        rows.append((np.sqrt(np.mean((b(WINDOW) - a) ** 2)), rms[k, l_], STRETCHES[k], SHIFTS[l_]))
    r = np.array(rows)
    print(f"{len(r)} Cu sites computed by both codes")
    print(f"rms difference (edge-step units), median: as computed {np.median(r[:, 0]):.3f}, "
          f"after stretch and shift {np.median(r[:, 1]):.3f}")
    pc = (10, 25, 50, 75, 90)
    print("stretch s of FEFF 9 against FEFF10, percentiles " + str(pc) + ": "
          + ", ".join(f"{v:.2f}" for v in np.percentile(r[:, 2], pc)))
    print("shift (eV), same percentiles: " + ", ".join(f"{v:+.1f}" for v in np.percentile(r[:, 3], pc)))
    d, pk = np.array(diffs), np.median(np.array(peaks), axis=0)
    print(f"as computed, per band of E - E0 (eV): rms / mean FEFF10 - FEFF 9 (edge-step units); white line "
          f"(median maximum) FEFF10 {pk[0]:.2f}, FEFF 9 {pk[1]:.2f}")
    for lo, hi in BANDS:
        m = (WINDOW >= lo) & (WINDOW < hi)
        print(f"  {lo:+3d}..{hi:+3d}: {np.sqrt(np.mean(d[:, m] ** 2)):.3f} / {d[:, m].mean():+.3f}")


if __name__ == "__main__":
    main()
