"""Normalization against committed xraylarch numbers (tests/fixtures, made by scripts/make_larch_fixture.py).

Tolerances: with larch's E0, the edge step agrees to 1e-9 (relative) and the normalized spectrum to 1e-9
(absolute); with our own E0 (larch smooths the derivative before taking its maximum, we do not),
E0 agrees within 0.5 eV and the normalized spectrum within 0.01.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from xanes_agent.foundation.normalization import (
    athena_normalize,
    find_e0,
    max_normalize,
    normalize,
    post_edge_normalize,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "larch_pre_edge.json").read_text())


@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_athena_matches_larch_given_e0(case):
    c = FIXTURE["cases"][case]
    e, mu = np.array(c["energy"]), np.array(c["mu"])
    r = athena_normalize(e, mu, e0=c["e0"])
    assert r.edge_step == pytest.approx(c["edge_step"], rel=1e-9)
    np.testing.assert_allclose(r.norm, c["norm"], atol=1e-9)
    np.testing.assert_allclose(r.pre_edge, c["pre_edge"], atol=1e-9)
    np.testing.assert_allclose(r.post_edge, c["post_edge"], atol=1e-9)
    assert (r.pre1, r.pre2, r.norm1, r.norm2, r.nnorm) == pytest.approx(
        tuple(c["params"][k] for k in ("pre1", "pre2", "norm1", "norm2", "nnorm")))


@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_athena_matches_larch_own_e0(case):
    c = FIXTURE["cases"][case]
    e, mu = np.array(c["energy"]), np.array(c["mu"])
    r = athena_normalize(e, mu)
    assert abs(r.e0 - c["e0"]) <= 0.5
    np.testing.assert_allclose(r.norm, c["norm"], atol=0.01)


def test_post_edge_is_one_at_e0_plus_50(cu_xmu):
    from xanes_agent.data import read_xmu

    s = read_xmu(cu_xmu)
    n = post_edge_normalize(s.energy, s.mu * 3.7)
    assert n.confident
    assert np.interp(n.e0 + 50, s.energy, n.mu) == pytest.approx(1.0)
    m = max_normalize(s.energy, s.mu)
    assert m.mu.max() == pytest.approx(1.0)


def test_partial_spectrum_is_flagged_not_silently_wrong(cu_xmu):
    from xanes_agent.data import read_xmu

    s = read_xmu(cu_xmu)
    e0 = find_e0(s.energy, s.mu)
    part = s.energy < e0 + 20
    n = post_edge_normalize(s.energy[part], s.mu[part], e0=e0)
    assert not n.confident and "not measured yet" in n.reason
    few = post_edge_normalize(s.energy[:5], s.mu[:5])
    assert not few.confident and np.isnan(few.mu).all()
    a = normalize(s.energy[part], s.mu[part], "athena", e0=e0)
    assert not a.confident
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(s.energy, s.mu, "area")


def _edge(e, at, width=1.0):
    return 0.5 + np.arctan((e - at) / width) / np.pi


def test_e0_is_half_the_step_on_the_main_rise_whichever_flank_is_steepest():
    """An edge with a shoulder (a first rise to 0.4 of the step at 8980 eV, the rest at 8990 eV): E0
    is where the rise crosses half the step, whether the shoulder's flank or the main one is the
    steeper; the steepest point itself jumps 10 eV between the two."""
    from xanes_agent.foundation.normalization import steepest_rise

    e = np.arange(8940.0, 9060.0, 0.25)
    for w_shoulder, w_main in ((0.5, 2.0), (2.0, 0.5)):
        mu = 0.4 * _edge(e, 8980.0, w_shoulder) + 0.6 * _edge(e, 8990.0, w_main)
        crossing = e[np.argmax(post_edge_normalize(e, mu, 8990.0).mu >= 0.5)]
        assert abs(find_e0(e, mu) - crossing) <= 0.25
        assert 8984.0 < find_e0(e, mu) < 8990.0
    steep = [steepest_rise(e, 0.4 * _edge(e, 8980.0, a) + 0.6 * _edge(e, 8990.0, b))
             for a, b in ((0.5, 2.0), (2.0, 0.5))]
    assert abs(steep[0] - 8980.0) <= 1.0 and abs(steep[1] - 8990.0) <= 1.0


def test_e0_of_a_partial_scan_is_the_full_scans_whichever_flank_its_points_make_steepest():
    """A two-step edge (0.6 of the step at 8980 eV, the rest, sharper, at 8990 eV) with post-edge
    oscillations, measured as the plan measures it (0.5 eV over the first flank, a 1.5 eV lattice
    elsewhere) and as a full 0.5 eV scan. The coarse points make the first flank the steepest, the
    full scan the second: the step measured 50 eV above each puts the half-step crossings 0.4 eV
    apart, the step measured about E0 itself (find_e0) within 0.02 eV."""
    from xanes_agent.foundation.normalization import _half_step_crossing, steepest_rise

    def mu(e):
        def rise(at, width):
            return 1.0 / (1.0 + np.exp(-(e - at) / width))
        wiggle = 0.15 * np.sin(2 * np.pi * (e - 8990.0) / 25.0) * rise(9000.0, 2.0)  # post-edge oscillation
        return 0.6 * rise(8980.0, 0.94) + 0.4 * rise(8990.0, 0.5) + wiggle

    full = np.arange(8960.0, 9080.0, 0.5)
    part = np.unique(np.concatenate([np.arange(8960.0, 9080.0, 1.5), np.arange(8976.0, 8984.01, 0.5)]))
    steep = {n: steepest_rise(e, mu(e)) for n, e in (("full", full), ("part", part))}
    assert steep["full"] == pytest.approx(8990.0) and steep["part"] == pytest.approx(8980.0)
    about_steepest = [_half_step_crossing(e, mu(e), steep[n], 0.5) for n, e in (("full", full), ("part", part))]
    assert abs(about_steepest[0] - about_steepest[1]) > 0.3  # the rule before: E0 moved with the flank
    assert find_e0(part, mu(part)) == pytest.approx(find_e0(full, mu(full)), abs=0.02)
    # E0 is the half-step point of the normalization about E0 itself
    e0 = find_e0(full, mu(full))
    assert np.interp(e0, full, post_edge_normalize(full, mu(full), e0).mu) == pytest.approx(0.5, abs=0.01)


def test_a_pre_edge_peak_above_half_the_step_is_not_the_edge():
    """A tetrahedral-like pre-edge peak reaching 0.9 of the step 12 eV below the edge is narrower
    than the 10 eV the main rise must stay above half the step."""
    e = np.arange(5950.0, 6080.0, 0.25)
    mu = _edge(e, 6000.0) + 0.9 * np.exp(-0.5 * ((e - 5988.0) / 1.0) ** 2)
    assert abs(find_e0(e, mu) - 6000.0) <= 0.5


def test_a_pre_edge_peak_is_not_the_edge_across_a_coarse_gap_of_a_partial_scan():
    """A scan's opening passes: fine points on a pre-edge peak (two steps high, still above half the
    step at their last point), a 6 eV survey gap, fine points on the main rise. Within the 10 eV
    after the peak's crossing only its own points lie, all above half the step; the survey point
    past the gap, back near the pre-edge level, shows the fall (before, E0 was put on the peak,
    15 eV low)."""
    def mu(e):
        return 2.0 * np.exp(-0.5 * ((e - 8983.0) / 1.5) ** 2) + 1.0 / (1.0 + np.exp(-(e - 8996.0) / 2.5))

    e = np.unique(np.concatenate([np.arange(8949.0, 9040.0, 6.0), np.arange(8980.0, 8985.01, 0.5),
                                  np.arange(8994.0, 9000.01, 0.5)]))
    assert find_e0(e, mu(e)) == pytest.approx(8996.0, abs=1.0)


def test_a_spectrum_that_starts_on_its_white_line_keeps_e0_at_its_start(bundled_library):
    """Mn on a Cu site of MnCu23(CO5)12: FEFF starts this spectrum on a white line of 4 edge steps,
    after which mu dips below 30 % of its first points' mean; the steepest-rise rule took that dip
    for the end of a pre-edge peak and put E0 22 eV up the post-edge. Half the step is crossed at
    the start."""
    from xanes_agent.foundation.normalization import steepest_rise

    s = bundled_library.spectrum(bundled_library.index_of("mp-1198809_0-Mn-sub"))
    assert steepest_rise(s.energy, s.mu) - s.energy[0] > 20.0
    assert find_e0(s.energy, s.mu) - s.energy[0] < 3.0
