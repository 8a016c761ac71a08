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
