"""Queue-safe XAS plans: every argument is JSON-safe (device names resolve in the queue server's
worker namespace; numbers, lists and dicts otherwise), so a person or an agent can put them in a
``bluesky-queueserver`` queue with ``BPlan``. They are also the building blocks of
:func:`~xanes_agent.plans.adaptive.adaptive_xanes_scan`.

- ``xas_survey_scan``: a coarse pass around the tabulated edge, then fine steps over the steepest
  rise it found (places E0 and the model window);
- ``xas_ranges_scan``: a list of ``[start, stop, step]`` ranges in eV, measured in order in one run
  (what the agent proposes).

Field names: ``md["xas"]["energy_field"]``/``["mu_field"]`` when given (the project's metadata
convention), else the motor's and the first detector's hinted fields.

No ``from __future__ import annotations`` here: the queue server validates plan arguments from
the real annotation objects.
"""

from typing import Any, Iterable, Sequence

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np

from ..foundation.energies import range_energies
from ..foundation.normalization import find_e0

DEFAULT_SURVEY = (-30.0, 70.0, 5.0)  # eV relative to the tabulated edge: start, stop, step
DEFAULT_EDGE_HALFWIDTH = 5.0  # eV either side of the coarse edge, measured in edge_step steps
NORM_OFFSET, NORM_HALFWIDTH = 50.0, 1.0  # eV: the post-edge normalization point E0 + 50, measured +-1


def xas_fields(detectors: Sequence[Any], motor: Any, md: dict[str, Any] | None) -> tuple[str, str]:
    """(energy field, mu field): from ``md['xas']``, else the motor's and first detector's hints."""
    xas = (md or {}).get("xas") or {}
    energy = xas.get("energy_field") or (getattr(motor, "hints", None) or {}).get("fields", [motor.name])[0]
    mu = xas.get("mu_field")
    if not mu:
        hinted = (getattr(detectors[0], "hints", None) or {}).get("fields", [])
        if not hinted:
            raise ValueError(f"no mu field: give md['xas']['mu_field'] or hint one on {detectors[0].name}")
        mu = hinted[0]
    return energy, mu


def coarse_edge(energies: Sequence[float], mu: Sequence[float]) -> float:
    """Centre (eV) of the steepest rise between consecutive coarse points: the true edge lies
    within half a survey step of it (a max-derivative *point* can be a whole step off)."""
    e = np.asarray(energies, float)
    m = np.asarray(mu, float)
    ok = np.isfinite(e) & np.isfinite(m)
    e, m = e[ok], m[ok]
    order = np.argsort(e)
    e, m = e[order], m[order]
    if len(e) < 3:
        return float("nan")
    slope = np.diff(m) / np.maximum(np.diff(e), 1e-9)
    i = int(np.argmax(slope))
    return float(0.5 * (e[i] + e[i + 1]))


def measure(detectors, motor, energies: Iterable[float], energy_field: str, mu_field: str,
            max_points: int | None = None):
    """Per-step stub: move and read at each energy (eV); returns (energies read, mu read) as lists."""
    es, mus = [], []
    for e in energies:
        if max_points is not None and len(es) >= max_points:
            break
        yield from bps.mv(motor, float(e))
        reading = yield from bps.trigger_and_read(list(detectors) + [motor])
        es.append(float(reading[energy_field]["value"]))
        mus.append(float(reading[mu_field]["value"]))
    return es, mus


def survey_and_edge(detectors, motor, edge_energy: float, energy_field: str, mu_field: str,
                    survey: Sequence[float] = DEFAULT_SURVEY, edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH, edge_step: float = 0.5,
                    on_points=None, norm_offset: float | None = NORM_OFFSET, norm_halfwidth: float = NORM_HALFWIDTH):
    """Per-step stub: the coarse survey, then ``edge_step`` eV steps over +-``edge_halfwidth`` eV
    around the steepest coarse rise, then (``norm_offset`` not None) the same steps over
    +-``norm_halfwidth`` eV around E0 + ``norm_offset``, where the post-edge normalization takes its
    value: measured there, not interpolated across the survey's coarse steps. ``on_points(energies,
    mu)`` is called after each pass. Returns the coarse edge estimate (eV)."""
    es, mus = [], []  # every point of the passes so far

    def one_pass(start: float, stop: float, step: float):
        e, m = yield from measure(detectors, motor, range_energies(start, stop, step), energy_field, mu_field)
        if on_points is not None:
            on_points(e, m)
        es.extend(e)
        mus.extend(m)

    lo, hi, step = survey
    yield from one_pass(edge_energy + lo, edge_energy + hi, step)
    e_c = coarse_edge(es, mus)
    if not np.isfinite(e_c):
        e_c = edge_energy
    yield from one_pass(e_c - edge_halfwidth, e_c + edge_halfwidth, edge_step)
    if norm_offset is not None:
        order = np.argsort(es)
        e0 = find_e0(np.array(es)[order], np.array(mus)[order])  # NaN for < 8 points
        if not np.isfinite(e0):
            e0 = e_c
        yield from one_pass(e0 + norm_offset - norm_halfwidth, e0 + norm_offset + norm_halfwidth, edge_step)
    return e_c


def xas_survey_scan(detectors, motor, edge_energy: float, *, survey: Sequence[float] = DEFAULT_SURVEY,
                    edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH, edge_step: float = 0.5, md: dict[str, Any] | None = None):
    """One run: coarse survey around ``edge_energy`` (eV, the tabulated edge) and a fine edge pass."""
    energy_field, mu_field = xas_fields(detectors, motor, md)
    _md = {"plan_name": "xas_survey_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"edge_energy": edge_energy, "survey": list(survey), "edge_halfwidth": edge_halfwidth,
                         "edge_step": edge_step},
           "plan_pattern": "xas_survey", "hints": {"dimensions": [([energy_field], "primary")]}, **(md or {})}

    @bpp.stage_decorator(list(detectors) + [motor])
    @bpp.run_decorator(md=_md)
    def inner():
        return (yield from survey_and_edge(detectors, motor, edge_energy, energy_field, mu_field,
                                           survey, edge_halfwidth, edge_step))

    return (yield from inner())


def xas_ranges_scan(detectors, motor, ranges: Sequence[Sequence[float]], *, md: dict[str, Any] | None = None):
    """One run measuring each ``[start, stop, step]`` range (eV) in order."""
    ranges = [[float(v) for v in r] for r in ranges]
    for r in ranges:
        if len(r) != 3:
            raise ValueError(f"each range is [start, stop, step] in eV; got {r}")
    energies = [range_energies(*r) for r in ranges]  # validates every range before anything moves
    energy_field, mu_field = xas_fields(detectors, motor, md)
    _md = {"plan_name": "xas_ranges_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"ranges": ranges}, "num_points": int(sum(len(e) for e in energies)),
           "hints": {"dimensions": [([energy_field], "primary")]}, **(md or {})}

    @bpp.stage_decorator(list(detectors) + [motor])
    @bpp.run_decorator(md=_md)
    def inner():
        for e in energies:
            yield from measure(detectors, motor, e, energy_field, mu_field)

    return (yield from inner())
