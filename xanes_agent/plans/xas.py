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

from collections.abc import Iterable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from ..agent.policy import DEFAULT_EDGE_HALFWIDTH, DEFAULT_SURVEY, AdaptivePolicy
from ..foundation.energies import range_energies


def xas_fields(detectors: Sequence[Any], motor: Any, md: dict[str, Any] | None) -> tuple[str, str]:
    """The fields a plan reads: from ``md['xas']``, else the motor's and first detector's hints.

    Parameters
    ----------
    detectors : sequence of ophyd devices
    motor : ophyd positioner
    md : dict, optional
        Start-document metadata (``xas.energy_field``, ``xas.mu_field``).

    Returns
    -------
    (str, str)
        The energy field and the mu field.
    """
    xas = (md or {}).get("xas") or {}
    energy = xas.get("energy_field") or (getattr(motor, "hints", None) or {}).get("fields", [motor.name])[0]
    mu = xas.get("mu_field")
    if not mu:
        hinted = (getattr(detectors[0], "hints", None) or {}).get("fields", [])
        if not hinted:
            raise ValueError(f"no mu field: give md['xas']['mu_field'] or hint one on {detectors[0].name}")
        mu = hinted[0]
    return energy, mu


def measure(detectors, motor, energies: Iterable[float], energy_field: str, mu_field: str,
            max_points: int | None = None):
    """Per-step stub: move to each energy and read the detectors (``trigger_and_read``).

    Parameters
    ----------
    detectors : sequence of ophyd devices
    motor : ophyd positioner
        The energy axis (eV).
    energies : iterable of float
        Energies (eV), in measuring order.
    energy_field, mu_field : str
        The fields read back as the point's energy and mu.
    max_points : int, optional
        Stop after this many points.

    Returns
    -------
    (list of float, list of float)
        The energies read (eV) and mu.
    """
    es, mus = [], []
    for e in energies:
        if max_points is not None and len(es) >= max_points:
            break
        yield from bps.mv(motor, float(e))
        reading = yield from bps.trigger_and_read(list(detectors) + [motor])
        es.append(float(reading[energy_field]["value"]))
        mus.append(float(reading[mu_field]["value"]))
    return es, mus


def opening_passes(detectors, motor, policy: AdaptivePolicy, energy_field: str, mu_field: str):
    """Per-step stub: the policy's survey, edge and normalization passes (see
    :mod:`xanes_agent.agent.policy`), each measured as the policy places it from what the passes
    before it read.

    Parameters
    ----------
    detectors, motor
        As for :func:`measure`.
    policy : AdaptivePolicy
        A policy that has not started (its opening passes are taken).
    energy_field, mu_field : str
        The fields read back.

    Returns
    -------
    (list of float, list of float)
        Every energy read (eV) and its mu.
    """
    es: list[float] = []
    mus: list[float] = []
    while policy.in_opening:
        (m,) = policy.next(es, mus)
        e, mu = yield from measure(detectors, motor, m.energies, energy_field, mu_field)
        es.extend(e)
        mus.extend(mu)
    return es, mus


def xas_survey_scan(detectors, motor, edge_energy: float, *, survey: Sequence[float] = DEFAULT_SURVEY,
                    edge_halfwidth: float = DEFAULT_EDGE_HALFWIDTH, edge_step: float = 0.5,
                    md: dict[str, Any] | None = None):
    """One run: coarse survey around ``edge_energy`` (eV, the tabulated edge), a fine edge pass and
    the post-edge normalization pass (the opening of :class:`~xanes_agent.agent.policy.AdaptivePolicy`).

    Parameters
    ----------
    detectors : list of ophyd devices (queue server: their names)
    motor : ophyd positioner (queue server: its name)
        The energy axis (eV).
    edge_energy : float
        The tabulated edge (eV).
    survey : (start, stop, step)
        eV relative to ``edge_energy``.
    edge_halfwidth, edge_step : float
        The fine pass: +-``edge_halfwidth`` eV around the coarse edge in ``edge_step`` eV steps.
    md : dict, optional
        Start-document metadata (``element``, ``edge``, ``xas`` field names, ``xas_session``).

    Returns
    -------
    float
        The coarse edge (eV) the fine pass was centred on.
    """
    energy_field, mu_field = xas_fields(detectors, motor, md)
    _md = {"plan_name": "xas_survey_scan", "detectors": [d.name for d in detectors], "motors": [motor.name],
           "plan_args": {"edge_energy": edge_energy, "survey": list(survey), "edge_halfwidth": edge_halfwidth,
                         "edge_step": edge_step},
           "plan_pattern": "xas_survey", "hints": {"dimensions": [([energy_field], "primary")]}, **(md or {})}
    policy = AdaptivePolicy(edge_energy, survey=survey, edge_halfwidth=edge_halfwidth, edge_step=edge_step)

    @bpp.stage_decorator(list(detectors) + [motor])
    @bpp.run_decorator(md=_md)
    def inner():
        yield from opening_passes(detectors, motor, policy, energy_field, mu_field)
        return policy.edge_centre

    return (yield from inner())


def xas_ranges_scan(detectors, motor, ranges: Sequence[Sequence[float]], *, md: dict[str, Any] | None = None):
    """One run measuring each ``[start, stop, step]`` range (eV) in order (what the agent suggests).

    Parameters
    ----------
    detectors : list of ophyd devices (queue server: their names)
    motor : ophyd positioner (queue server: its name)
        The energy axis (eV).
    ranges : sequence of [start, stop, step]
        eV; every range is checked before anything moves (``ValueError`` naming a bad one).
    md : dict, optional
        Start-document metadata.
    """
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
