"""``adaptive_xanes_scan``: measure where the agent says it matters, stop when it is confident.

One run, composed from ``bluesky.plan_stubs``:

1. **survey**: a coarse pass across the model window around the tabulated edge (default 4 eV steps
   from edge - 30 eV to edge + 70 eV): pre-edge level, rough edge, post-edge (E0 + 50 eV);
2. **edge**: 0.5 eV steps over +-6 eV around the steepest coarse rise, so E0 (and with it the
   model window) is placed to sub-eV precision;
3. **adaptive loop**: ask the agent for the next range(s) (``suggest``), measure them, ``ingest``
   the readings tagged with the proposal uid, until a stop criterion holds: CN probability, distance
   std (Angstrom) and charge std (e) thresholds all met, a point budget, a time budget, or nothing
   left to propose.

Every decision is recorded in the run: the ``decisions`` stream holds each proposal (JSON, with its
uid and score) and the final stop reason, which also goes into the stop document's ``reason``.
Works with any ophyd energy positioner and detector whose mu field is named in ``md["xas"]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from ophyd import Signal

from ..models.normalization import find_e0

DEFAULT_THRESHOLDS = {"cn_probability": 0.9, "distance_std": 0.01, "charge_std": 0.05}


def stop_reason(report: dict[str, Any], thresholds: dict[str, float]) -> str:
    """Why the predictions are confident enough to stop, or ``""`` if they are not."""
    preds = report.get("predictions") or {}
    if not preds or not report.get("edge_located"):
        return ""
    checks = []
    cn = preds.get("coordination_number")
    if cn is not None:
        if cn["probability"] < thresholds["cn_probability"]:
            return ""
        checks.append(f"P(CN={int(cn['prediction'])})={cn['probability']:.2f}")
    for name, key in (("mean_nn_distance", "distance_std"), ("charge", "charge_std")):
        p = preds.get(name)
        if p is not None:
            if p["std"] > thresholds[key]:
                return ""
            checks.append(f"{name} std={p['std']:.3g}")
    return "confident: " + ", ".join(checks)


def _read_point(detectors, motor, energy, mu_field, energy_field):
    yield from bps.mv(motor, energy)
    reading = yield from bps.trigger_and_read(list(detectors) + [motor])
    return reading[energy_field]["value"], reading[mu_field]["value"]


def adaptive_xanes_scan(detectors, motor, agent, *, edge_energy: float, md: dict[str, Any],
                        survey: tuple[float, float, float] = (-30.0, 70.0, 4.0), edge_halfwidth: float = 6.0,
                        edge_step: float = 0.5, batch_size: int = 1, max_points: int = 250,
                        max_time: float | None = None, thresholds: dict[str, float] | None = None):
    """Adaptive XANES scan (see module docstring). ``md`` must carry ``element``, ``edge`` and ``xas``
    (energy_field, mu_field) as the simulator and beamline profiles set them; energies in eV."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    xas = md.get("xas") or {}
    energy_field, mu_field = xas.get("energy_field"), xas.get("mu_field")
    if not energy_field or not mu_field or "element" not in md:
        raise ValueError("md needs 'element' and xas.energy_field / xas.mu_field (see xanes_agent.simulator)")
    decision = Signal(name="agent_decision", value="")
    _md = {"plan_name": "adaptive_xanes_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"edge_energy": edge_energy, "survey": list(survey), "edge_halfwidth": edge_halfwidth,
                         "edge_step": edge_step, "batch_size": batch_size, "max_points": max_points,
                         "max_time": max_time, "thresholds": th, "strategy": agent.strategy.name},
           "hints": {"dimensions": [([energy_field], "primary")]}, **md}
    t0 = time.monotonic()
    counter = {"n": 0}

    def record(kind: str, **info):
        decision.put(json.dumps({"kind": kind, "n_points": counter["n"], **info}))
        yield from bps.trigger_and_read([decision], name="decisions")

    def measure(energies, uid=None):
        es, mus = [], []
        for e in energies:
            if counter["n"] >= max_points:
                break
            x, y = yield from _read_point(detectors, motor, float(e), mu_field, energy_field)
            counter["n"] += 1
            es.append(x)
            mus.append(y)
        if es:
            agent.ingest(np.array(es), np.array(mus), uid=uid)
        return es, mus

    def inner():
        uid = yield from bps.open_run(md=_md)
        agent.begin(md["element"], md.get("edge", "K"), uid=uid)
        lo, hi, step = survey
        es, mus = yield from measure(np.arange(edge_energy + lo, edge_energy + hi + 1e-9, step))
        yield from record("survey", energies=[lo + edge_energy, hi + edge_energy, step])
        e_c = find_e0(np.array(es), np.array(mus)) if len(es) >= 8 else edge_energy
        if not np.isfinite(e_c):
            e_c = edge_energy
        yield from measure(np.arange(e_c - edge_halfwidth, e_c + edge_halfwidth + 1e-9, edge_step))
        yield from record("edge", centre=e_c, halfwidth=edge_halfwidth, step=edge_step)
        reason = ""
        while not reason:
            report = agent.report()
            reason = stop_reason(report, th)
            if reason:
                break
            if counter["n"] >= max_points:
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
            for p in proposals:
                yield from record("proposal", **p)
                e = np.arange(p["start"], p["stop"] + 1e-9, p["step"])
                yield from measure(e, uid=p["uid"])
        final = agent.report()
        yield from record("stop", reason=reason, predictions=final.get("predictions"))
        agent.end()
        yield from bps.close_run(exit_status="success", reason=reason)
        return reason

    return (yield from bpp.stage_wrapper(inner(), list(detectors) + [motor]))
