"""FEFF10 run time with glibc's default malloc trimming vs the padding the library build uses.

FEFF's stage processes free and re-allocate large work arrays in a loop; glibc's defaults hand the
pages back to the kernel on every free, so each re-allocation faults them in again (kernel time).
``xanes_agent.data.feff.STAGE_MALLOC_ENV`` keeps padding at the top of the heap instead. This runs
the same inputs through ``run_feff`` both ways (baseline: ``MALLOC_TOP_PAD_`` set by hand to glibc's
default, which the project's setting leaves alone), one at a time, and prints wall time, the ratio
and whether the spectra are identical bit for bit.

    python benchmarks/feff_malloc.py [--n 4] [--parameters reduced-v1]
"""

import argparse
import os
import tempfile

import numpy as np

from xanes_agent.data.feff import PARAMETER_SETS, STAGE_MALLOC_ENV, feff_input
from xanes_agent.data.structures import FAMILY_BY_NAME, build

GLIBC_DEFAULT_TOP_PAD = str(128 * 1024)  # M_TOP_PAD's documented default (mallopt(3))


def run(inp: str, top_pad: str | None) -> tuple[float, np.ndarray]:
    """``run_feff`` into a fresh cache; ``top_pad`` set by hand wins over the project's setting."""
    from xanes_agent.data.feff import run_feff

    os.environ.pop("MALLOC_TOP_PAD_", None)
    if top_pad is not None:
        os.environ["MALLOC_TOP_PAD_"] = top_pad
    try:
        with tempfile.TemporaryDirectory() as cache:
            res = run_feff(inp, cache)
            if not res.ok:
                raise SystemExit(f"FEFF failed: {res.reason}")
            return res.seconds, res.mu
    finally:
        os.environ.pop("MALLOC_TOP_PAD_", None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4, help="structures (rocksalt, layered, spinel, zircon ...)")
    ap.add_argument("--parameters", default="reduced-v1")
    a = ap.parse_args()
    params = PARAMETER_SETS[a.parameters]
    cases = [("rocksalt", "Fe"), ("layered_limo2", "Co"), ("spinel_oct", "Mn"), ("zircon_m5", "V"),
             ("pyramidal_112", "Ni"), ("perovskite_la", "Cr")][: a.n]
    print(f"FEFF10, parameter set {params.name}, one run at a time; default glibc malloc vs {STAGE_MALLOC_ENV}")
    print(f"{'structure':<22}{'default s':>10}{'padded s':>10}{'speed-up':>10}  identical")
    ratios = []
    for fam, el in cases:
        g = build(FAMILY_BY_NAME[fam], el, seed=1)
        inp = feff_input(g.structure, g.absorber_index, params, title=g.id)
        t_base, mu_base = run(inp, GLIBC_DEFAULT_TOP_PAD)
        t_pad, mu_pad = run(inp, None)
        ratios.append(t_base / t_pad)
        print(f"{g.id:<22}{t_base:>10.1f}{t_pad:>10.1f}{ratios[-1]:>9.2f}x  {np.array_equal(mu_base, mu_pad)}")
    print(f"geometric-mean speed-up {np.exp(np.mean(np.log(ratios))):.2f}x over {len(ratios)} structures")


if __name__ == "__main__":
    main()
