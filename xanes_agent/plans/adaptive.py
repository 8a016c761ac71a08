"""``adaptive_xanes_scan``: measure where the agent says it matters, stop when it is confident.

One run, composed from ``bluesky.plan_stubs``:

1. **survey**: a coarse pass across the model window around the tabulated edge (default 5 eV steps
   from edge - 30 eV to edge + 70 eV): pre-edge level, rough edge, post-edge;
2. **edge**: 0.5 eV steps over +-5 eV around the steepest coarse interval, so E0 (and with it the
   model window) is placed to sub-eV precision; then 0.5 eV steps over E0 + 50 +- 1 eV, where the
   post-edge normalization takes its value;
3. **adaptive loop**: ask the agent for the next range(s) (``suggest``: coarse, then fine), measure
   them, ``ingest`` the readings tagged with the proposal uid, until a stop criterion holds: CN
   probability, distance std (Angstrom) and charge std (e) thresholds all met; or the answer is
   stable (window covered, the last 3 decisions agree within 0.01 A and 0.05 e, ``stability``);
   a point budget; a time budget; or nothing left to propose.

Every decision is recorded in the run: the ``decisions`` stream holds each proposal (JSON, with its
uid and score) and the final stop reason, which also goes into the stop document's ``reason``.
Works with any ophyd energy positioner and detector whose fields are named in ``md["xas"]`` or
hinted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from ophyd import Signal

from ..agent.stopping import (DEFAULT_STABILITY, DEFAULT_THRESHOLDS, cn_probability, decision_of, stable_reason,
                              stop_reason)
from .xas import DEFAULT_EDGE_HALFWIDTH, DEFAULT_SURVEY, measure, range_energies, survey_and_edge, xas_fields

def adaptive_xanes_scan(detectors, motor, agent, *, edge_energy: float, md: dict[str, Any],
                        survey: tuple[float, float, float] = DEFAULT_SURVEY, edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH,
                        edge_step: float = 0.5, batch_size: int = 1, max_points: int = 250,
                        max_time: float | None = None, thresholds: dict[str, float] | None = None,
                        stability: dict[str, float] | None = None):
    """Adaptive XANES scan (see module docstring). ``md`` must carry ``element`` and ``edge``; the
    energy and mu fields come from ``md["xas"]`` (as the simulator sets them) or the devices' hints.
    Energies in eV."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    stab = {**DEFAULT_STABILITY, **(stability or {})}
    if "element" not in md:
        raise ValueError("md needs 'element' (and 'edge', default K): the absorber whose model the agent uses")
    energy_field, mu_field = xas_fields(detectors, motor, md)
    decision = Signal(name="agent_decision", value="")
    _md = {"plan_name": "adaptive_xanes_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"edge_energy": edge_energy, "survey": list(survey), "edge_halfwidth": edge_halfwidth,
                         "edge_step": edge_step, "batch_size": batch_size, "max_points": max_points,
                         "max_time": max_time, "thresholds": th, "stability": stab,
                         "strategy": agent.strategy.name},
           "hints": {"dimensions": [([energy_field], "primary")]}, **md}
    t0 = time.monotonic()
    measured: list[float] = []  # energies read so far (eV); its length is the point count

    def record(kind: str, **info):
        decision.put(json.dumps({"kind": kind, "n_points": len(measured), **info}))
        yield from bps.trigger_and_read([decision], name="decisions")

    def tell(es, mus, uid=None):
        measured.extend(es)
        if es:
            agent.ingest(np.array(es), np.array(mus), uid=uid)

    def measure_and_tell(energies, uid=None):
        # a point already measured (adjacent ranges share their ends) is not measured again
        done = np.array(measured)
        energies = [e for e in energies if not len(done) or np.abs(done - e).min() > 0.2]
        es, mus = yield from measure(detectors, motor, energies, energy_field, mu_field,
                                     max_points=max_points - len(measured))
        tell(es, mus, uid)

    def inner():
        uid = yield from bps.open_run(md=_md)
        agent.begin(md["element"], md.get("edge", "K"), uid=uid, md=md)
        e_c = yield from survey_and_edge(detectors, motor, edge_energy, energy_field, mu_field, survey,
                                         edge_halfwidth, edge_step, on_points=tell)
        lo, hi, step = survey
        yield from record("survey", energies=[lo + edge_energy, hi + edge_energy, step])
        yield from record("edge", centre=e_c, halfwidth=edge_halfwidth, step=edge_step)
        reason = ""
        decisions: list[tuple | None] = []
        while not reason:
            report = agent.report()
            decisions.append(decision_of(report))
            reason = stop_reason(report, th) or stable_reason(decisions, report.get("coverage", 0.0), stab,
                                                              cn_probability(report))
            if reason:
                break
            if len(measured) >= max_points:
                reason = f"point budget reached ({max_points})"
                break
            if max_time is not None and time.monotonic() - t0 > max_time:
                reason = f"time budget reached ({max_time} s)"
                break
            proposals = agent.suggest(batch_size)
            if not proposals:
                reason = "nothing left to propose (model window covered)" if report.get("edge_located") \
                    else "edge not located; no proposal"
                break
            n_before = len(measured)
            for p in proposals:
                yield from record("proposal", **p)
                yield from measure_and_tell(range_energies(p["start"], p["stop"], p["step"]), uid=p["uid"])
            if len(measured) == n_before:  # every proposed energy was measured already: do not loop
                reason = "nothing new to measure (proposals repeat measured points)"
        final = agent.report()
        yield from record("stop", reason=reason, predictions=final.get("predictions"))
        agent.end(reason=reason)
        yield from bps.close_run(exit_status="success", reason=reason)
        return reason

    return (yield from bpp.stage_wrapper(inner(), list(detectors) + [motor]))
