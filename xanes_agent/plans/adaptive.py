"""``adaptive_xanes_scan``: measure where the agent says it matters, stop when it is confident.

One run, composed from ``bluesky.plan_stubs``, driven by the project's one adaptive policy
(:class:`~xanes_agent.agent.policy.AdaptivePolicy`, shared with the queue-server suggester and
the points-to-decision benchmark):

1. **survey**: a coarse pass around the tabulated edge (default 6 eV
   steps from edge - 30 eV to edge + 60 eV): pre-edge level, rough edge;
2. **edge**: 0.5 eV steps over +-4 eV around the steepest coarse interval, so E0 (and with it the
   model window) is placed to sub-eV precision; then one point at E0 + 50 eV, where the post-edge
   normalization takes its value;
3. **adaptive loop**: the agent's next range(s) (``suggest``: coarse, then fine), on the survey's
   lattice and without the energies already measured, measured and ``ingest``-ed with the proposal
   uid, until a stop rule holds: confident (in domain; calibrated CN probability and 68 %
   half-widths, in A and e, within ``thresholds``); stable (window covered, the last decisions
   agree within ``stability``, the CN a decision); settled with the CN undecided (as many agreeing
   decisions below the decision probability; the stop says so); stable before the window is covered
   (from 80 % of it, more agreeing decisions at the confident probability); a point budget; a time budget;
   nothing new measured; nothing left to propose.

Every decision is recorded in the run: the ``decisions`` stream holds each pass and proposal (JSON,
with its uid and score) and the final stop reason, which also goes into the stop document's
``reason``. If the plan ends early (an abort, an exception), the agent's own run is closed too,
with ``exit_status="abort"``. Works with any ophyd energy positioner and detector whose fields are
named in ``md["xas"]`` or hinted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from ophyd import Signal

from ..agent.policy import DEFAULT_EDGE_HALFWIDTH, DEFAULT_SURVEY, AdaptivePolicy, Stop
from .xas import measure, xas_fields


def adaptive_xanes_scan(detectors, motor, agent, *, edge_energy: float, md: dict[str, Any],
                        survey: tuple[float, float, float] = DEFAULT_SURVEY,
                        edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH,
                        edge_step: float = 0.5, batch_size: int = 1, max_points: int = 250,
                        max_time: float | None = None, thresholds: dict[str, float] | None = None,
                        stability: dict[str, float] | None = None):
    """Adaptive XANES scan (see the module docstring).

    Parameters
    ----------
    detectors : list of ophyd devices
        Read at every energy; the mu field is ``md["xas"]["mu_field"]`` or the first one's hint.
    motor : ophyd positioner
        The energy axis (eV).
    agent : XANESAgent
        Asked (``report``, ``suggest``) and told (``ingest``) as the scan goes.
    edge_energy : float
        The tabulated edge (eV) the survey is placed around.
    md : dict
        Start-document metadata; must carry ``element`` (and ``edge``, default K).
    survey, edge_halfwidth, edge_step, batch_size, max_points, max_time, thresholds, stability
        The policy's settings (:class:`~xanes_agent.agent.policy.AdaptivePolicy`); eV, points, s.

    Returns
    -------
    str
        The stop reason.
    """
    if "element" not in md:
        raise ValueError("md needs 'element' (and 'edge', default K): the absorber whose model the agent uses")
    policy = AdaptivePolicy(edge_energy, survey=survey, edge_halfwidth=edge_halfwidth, edge_step=edge_step,
                            batch_size=batch_size, max_points=max_points, max_time=max_time,
                            thresholds=thresholds, stability=stability)
    energy_field, mu_field = xas_fields(detectors, motor, md)
    decision = Signal(name="agent_decision", value="")
    _md = {"plan_name": "adaptive_xanes_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"edge_energy": edge_energy, "survey": list(survey), "edge_halfwidth": edge_halfwidth,
                         "edge_step": edge_step, "batch_size": batch_size, "max_points": max_points,
                         "max_time": max_time, "thresholds": policy.thresholds, "stability": policy.stability,
                         "strategy": agent.strategy.name},
           "hints": {"dimensions": [([energy_field], "primary")]}, **md}
    t0 = time.monotonic()
    energies: list[float] = []  # every energy read so far (eV), and its mu
    mus: list[float] = []

    def record(kind: str, **info):
        decision.put(json.dumps({"kind": kind, "n_points": len(energies), **info}, default=float))
        yield from bps.trigger_and_read([decision], name="decisions")

    def inner():
        uid = yield from bps.open_run(md=_md)
        agent.begin(md["element"], md.get("edge", "K"), uid=uid, md=_md)  # as the start document carries it
        while True:
            action = policy.next(energies, mus, agent.report(), agent.suggest, time.monotonic() - t0)
            if isinstance(action, Stop):
                break
            for m in action:
                yield from record(m.kind, **m.info)
                es, ms = yield from measure(detectors, motor, m.energies, energy_field, mu_field)
                energies.extend(es)
                mus.extend(ms)
                if es:
                    agent.ingest(np.array(es), np.array(ms), uid=m.uid)
        yield from record("stop", reason=action.reason, predictions=agent.report().get("predictions"))
        agent.end(reason=action.reason)
        yield from bps.close_run(exit_status="success", reason=action.reason)
        return action.reason

    def close_agent():
        # the plan ended before its stop rule (abort, exception): the agent's run gets its stop document too
        if agent.in_run is not None:
            agent.end(exit_status="abort", reason="the scan ended before a stop rule held")
        yield from bps.null()

    return (yield from bpp.stage_wrapper(bpp.finalize_wrapper(inner(), close_agent()), list(detectors) + [motor]))
