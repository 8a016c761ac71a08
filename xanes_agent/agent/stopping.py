"""When to stop measuring: pure functions of the agent's reports (no I/O, no plans).

- :func:`stop_reason`: the answer is confident: the spectrum is inside the model's applicability
  domain, the *calibrated* CN probability and the calibrated 68 % interval half-widths (``std``:
  distance in A, charge label in its unit) meet the thresholds (``models.calibration``);
- :func:`stable_reason`: the answer has stopped changing (model window covered, the last few
  decisions agree within tolerances: A, and the charge label's unit) *and* the CN is a decision:
  its calibrated probability is at least ``stability["cn_probability"]`` (0.5 is not a decision);
  or it has stopped changing below that probability, and the stop says the CN is undecided; or,
  before the window is covered (from 80 % of it), it has stopped changing for more updates at the
  confident stop's probability (0.9).

Used by ``adaptive_xanes_scan`` and by the queue-server suggester alike.
"""

from __future__ import annotations

from typing import Any

from ..foundation.properties import CN, DECIDING, PROPERTIES, REGRESSORS

DEFAULT_THRESHOLDS = {"cn_probability": 0.9, "distance_std": 0.01, "charge_std": 0.05}
# stop when at least `coverage` of the model window is measured and the last `updates` decisions
# agree within these (A; the charge label's unit, none for an oxidation state), the CN at calibrated
# probability >= `cn_probability`. Two updates, not three: once the window is covered the decisions
# have nearly always agreed already, and the third cost 0-3 points of a 241-point scan (median) with
# the same decisions at the stop (points-to-decision, 8 elements)
# An answer that has settled below that probability stops the scan too, after `undecided_updates`
# agreeing updates, and says the CN is undecided: past the window's coverage more points rarely
# decide it (points-to-decision, 60 test spectra per element: the mean share of the scan measured
# fell from 28-31 % to 25-26 % for Mn..Cu, the CN at the stop changed for 3 of 481 samples (Fe one
# right to wrong, Ni one each way), Cu decided 42 of 60 instead of 46, right as often); 0 switches it
# off (scan the window to the end). As many updates as a decided answer, not more: 4 held Cu's undecided
# stops at a median 28 % of the scan, and with 2 one stop in 540 test spectra of 8 elements had a CN right
# that was wrong before (Mn), none the reverse (points-to-decision --undecided-updates 2, session 22: median
# share at the stop Cu 25.7 -> 24.5 %, Ti..Ni unchanged; chosen on Cu's 120, checked on the others' 60 each)
# Before the window is covered, a stronger answer stops too: from `early_coverage` of it, the last
# `early_updates` decisions agreeing at a calibrated P(CN) >= `early_cn_probability` (the confident
# stop's threshold). A quarter of the held-out spectra (tetrahedral pre-edge passes, two-step edges)
# need 10-20 more points to cover the window after their answer has stopped moving (points-to-decision
# --early-updates 0, session 19, 60 test spectra per element, the same models and noise draws: median
# share at the stop Ti 26.1 -> 23.9 %, V..Ni 24.1 -> 23.2-23.7 %, Cu 25.5 -> 25.3 %; the CN at the stop
# unchanged for every element, the distance error against the truth within 0.002 A; the charge label
# settles later (V: off the full scan's by > 0.05 at a third of the early stops, as far from the truth:
# MAE 0.165 against the full scan's 0.175); 0 updates switch it off
DEFAULT_STABILITY = {"updates": 2, "distance": 0.01, "charge": 0.05, "cn_probability": 0.6, "coverage": 0.99,
                     "undecided_updates": 2, "early_updates": 3, "early_coverage": 0.8, "early_cn_probability": 0.9}


def decision_of(report: dict[str, Any]) -> tuple | None:
    """(CN, distance in A, charge label) of an agent report: the deciding properties
    (:data:`~xanes_agent.foundation.properties.DECIDING`); None before the edge is located.
    A property the model lacks is None in the tuple."""
    preds = report.get("predictions") or {}
    if not preds or not report.get("edge_located"):
        return None
    return tuple(float(preds[k]["prediction"]) if k in preds else None for k in DECIDING)


def cn_probability(report: dict[str, Any]) -> float | None:
    """The calibrated probability of the predicted CN in a report; None if there is none."""
    cn = (report.get("predictions") or {}).get(CN)
    return float(cn["probability"]) if cn is not None else None


def tolerances(stability: dict[str, float]) -> tuple[float, ...]:
    """The stability tolerance of each deciding property, in :func:`decision_of`'s order (0 for CN:
    it must match)."""
    return tuple(stability[PROPERTIES[k].stability] if PROPERTIES[k].stability else 0.0 for k in DECIDING)


def agree(d: tuple | None, ref: tuple | None, stability: dict[str, float]) -> bool:
    """Whether decision ``d`` is the same answer as ``ref``: the same CN, the regressors within
    their ``stability`` tolerances (A, e). A property either lacks is not compared."""
    if d is None or ref is None:
        return False
    for t, v, r in zip(tolerances(stability), d, ref):
        if v is not None and r is not None and abs(v - r) > t + 1e-12:
            return False
    return True


def stable_reason(decisions: list[tuple | None], coverage: float, stability: dict[str, float],
                  probability: float | None = None) -> str:
    """Why the answer has stopped changing, or ``""``: the measured share of the model window
    (``coverage``) is at least ``stability["coverage"]`` (0.99: covered) and the last
    ``stability["updates"]`` decisions have the same CN and distances and charge labels within
    ``stability["distance"]`` A and ``stability["charge"]`` (the label's unit) of the latest, the
    CN at calibrated ``probability`` of at least ``stability["cn_probability"]`` ("stable"); or the last
    ``stability["undecided_updates"]`` agree so below it ("settled, CN undecided"); or, with
    ``stability["early_coverage"]`` of the window measured, the last ``stability["early_updates"]``
    agree and the latest CN has a probability of at least ``stability["early_cn_probability"]``
    ("stable")."""
    n = int(stability.get("updates", 0))
    need = float(stability.get("coverage", 0.99))
    undecided = probability is not None and probability < stability.get("cn_probability", 0.0)
    if undecided:
        n = int(stability.get("undecided_updates", 0))
    elif (coverage < need and probability is not None and coverage >= stability.get("early_coverage", need)
          and probability >= stability.get("early_cn_probability", 1.0)):
        n, need = int(stability.get("early_updates", 0)), 0.0  # more agreeing updates instead of the rest
    if n <= 0 or coverage < need or len(decisions) < n or any(d is None for d in decisions[-n:]):
        return ""
    ref = decisions[-1]
    if not all(agree(d, ref, stability) for d in decisions[-n:]):
        return ""
    tol = tolerances(stability)
    # no unit for the charge label: an oxidation state has none (a Bader charge would be in e)
    within = f"distance within {tol[1]} A, charge label within {tol[2]}"
    part = f"; {coverage:.0%} of the model window measured" if coverage < 0.99 else ""
    if undecided:
        return (f"settled, CN undecided: the last {n} updates agree (CN {ref[0]:.0f} at P={probability:.2f}, "
                f"below {stability['cn_probability']}: not a decision; {within}{part})")
    p = f", P={probability:.2f}" if probability is not None else ""
    return f"stable: the last {n} updates agree (CN {ref[0]:.0f}{p}, {within}{part})"


def stop_reason(report: dict[str, Any], thresholds: dict[str, float]) -> str:
    """Why the predictions are confident enough to stop, or ``""`` if they are not."""
    preds = report.get("predictions") or {}
    if not preds or not report.get("edge_located"):
        return ""
    checks = []
    first = next(iter(preds.values()))
    if not first.get("in_domain", True):
        return ""  # out of the model's domain: never 'confident', however narrow the numbers look
    cn = preds.get(CN)
    if cn is not None:
        if cn["probability"] < thresholds["cn_probability"]:
            return ""
        checks.append(f"P(CN={int(cn['prediction'])})={cn['probability']:.2f}")
    for name in REGRESSORS:
        p = preds.get(name)
        if p is not None and PROPERTIES[name].decides:
            if p["std"] > thresholds[PROPERTIES[name].threshold]:
                return ""
            checks.append(f"{name} std={p['std']:.3g}")
    return "confident: " + ", ".join(checks)
