"""The agent's own run: what it publishes for each raw run it follows.

One start document (linked to the raw run by ``raw_run_uid``, with ``agent``, element, edge,
strategy, the charge label and the model's identity), one ``predictions`` descriptor, one event
per update, one stop. Composed with event-model's ``compose_run``; the event data are a pure
function of the predictor's state (:func:`event_data`), so a view or a test can compose them too.

Field names and units come from the property registry (:mod:`xanes_agent.foundation.properties`):
``cn``/``cn_probability``/``cn_proba``; for each regressor ``<short>``, ``<short>_std`` (calibrated
68 % half-width), ``<short>_seed_std``, ``<short>_lo68``/``_hi68``/``_lo90``/``_hi90``;
``intervals_across_codes`` says whether the intervals are the ones calibrated on another code's
spectra (for measured data) or same-code ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from event_model import compose_run

from ..foundation.properties import CN, PROPERTIES
from .routing import AGENT_NAME

LEVELS = (68, 90)  # the interval levels (%) carried in the documents


class PredictionsRun:
    """Compose the agent's run for raw run ``raw_uid`` (see the module docstring)."""

    def __init__(self, raw_start: dict, raw_uid: str, element: str, edge: str, model: Any, strategy: str) -> None:
        pm = model.properties
        self.compose = compose_run(metadata={
            "raw_run_uid": raw_uid, "agent": AGENT_NAME, "element": element, "edge": edge,
            "strategy": strategy, "charge_label": pm["charge"].label if "charge" in pm else None,
            "model": {"featurization": model.featurization, "training_data_hash": model.training_data_hash},
            # what stock callbacks (LiveTable, BestEffortCallback) read from any start document
            "plan_name": "xanes_agent_predictions", "plan_type": "callback",
            "scan_id": raw_start.get("scan_id") if isinstance(raw_start.get("scan_id"), int) else 0})
        self.desc = self.compose.compose_descriptor(name="predictions", data_keys=data_keys(model))

    def opening(self) -> Iterator[tuple[str, dict]]:
        """The start and descriptor documents, in order."""
        yield "start", self.compose.start_doc
        yield "descriptor", self.desc.descriptor_doc

    def event(self, data: dict[str, Any]) -> dict:
        """The event document of one update's ``data`` (:func:`event_data`)."""
        now = time.time()
        return self.desc.compose_event(data=data, timestamps={k: now for k in data})

    def stop(self, exit_status: str = "success", reason: str = "") -> dict:
        return self.compose.compose_stop(exit_status=exit_status, reason=reason)


def data_keys(model: Any) -> dict[str, dict[str, Any]]:
    """The ``predictions`` stream's data keys for ``model`` (units from the registry)."""
    num = {"dtype": "number", "shape": [], "source": AGENT_NAME}
    keys = {"n_points": {**num, "dtype": "integer"}, "n_readings": {**num, "dtype": "integer"},
            "coverage": num, "e0": {**num, "units": "eV"},
            "edge_located": {**num, "dtype": "boolean"}, "normalization_confident": {**num, "dtype": "boolean"},
            "update_seconds": {**num, "units": "s"}, "proposals": {**num, "dtype": "string"},
            "n_dropped": {**num, "dtype": "integer"}, "n_rejected": {**num, "dtype": "integer"}}
    for name, p in model.properties.items():
        short = PROPERTIES[name].short
        if p.kind == "classifier":
            keys.update({short: {**num, "dtype": "integer"}, f"{short}_probability": num, f"{short}_spread": num,
                         f"{short}_proba": {**num, "dtype": "array", "shape": [len(p.packed.classes)]}})
        else:
            unit = {"units": PROPERTIES[name].unit_for(p.label)}
            keys.update({short: {**num, **unit}, f"{short}_std": {**num, **unit}, f"{short}_seed_std": {**num, **unit},
                         f"{short}_tree_std": {**num, **unit},
                         **{f"{short}_{end}{lvl}": {**num, **unit} for end in ("lo", "hi") for lvl in LEVELS}})
    keys.update({"in_domain": {**num, "dtype": "boolean"}, "domain_score": num,
                 "domain_trees_disagree": {**num, "dtype": "boolean"},
                 "calibrated": {**num, "dtype": "boolean"}, "intervals_across_codes": {**num, "dtype": "boolean"},
                 "cn_raw_probability": num})
    return keys


def event_data(s: Any, model: Any, spectrum: Any, proposals: Iterable[Any], n_readings: int) -> dict[str, Any]:
    """One update as event data: the predictor's state ``s`` (a ``LiveState``), the ``model``,
    the partial ``spectrum`` (for its dropped/rejected counts), the current ``proposals`` and the
    readings the state was computed from (``n_readings``: readings may arrive during an update)."""
    data: dict[str, Any] = {
        "n_points": s.n_points, "n_readings": int(n_readings),
        "coverage": s.coverage_fraction, "e0": s.e0 if s.e0 is not None else float("nan"),
        "edge_located": s.edge_located, "normalization_confident": s.normalization_confident,
        "update_seconds": s.seconds, "proposals": json.dumps([p.as_dict() for p in proposals]),
        "n_dropped": spectrum.n_dropped, "n_rejected": spectrum.n_rejected}
    for name, pm in model.properties.items():
        p = s.predictions.get(name)
        short = PROPERTIES[name].short
        if pm.kind == "classifier":
            data[short] = int(p["prediction"]) if p else -1
            data[f"{short}_probability"] = float(p["probability"]) if p else np.nan
            data[f"{short}_spread"] = float(p["spread"]) if p else np.nan
            data[f"{short}_proba"] = np.asarray(p["proba"]).tolist() if p else [np.nan] * len(pm.packed.classes)
        else:
            data[short] = float(p["prediction"]) if p else np.nan
            data[f"{short}_std"] = float(p["std"]) if p else np.nan  # calibrated 68 % half-width
            data[f"{short}_seed_std"] = float(p.get("seed_std", p["std"])) if p else np.nan
            data[f"{short}_tree_std"] = float(p.get("tree_std", np.nan)) if p else np.nan  # spread of every tree
            for lvl in LEVELS:
                iv = p.get(f"interval{lvl}") if p else None
                data[f"{short}_lo{lvl}"] = float(iv[0]) if iv is not None else np.nan
                data[f"{short}_hi{lvl}"] = float(iv[1]) if iv is not None else np.nan
    first = next(iter(s.predictions.values()), None) or {}
    data["in_domain"] = bool(first.get("in_domain", True))
    data["domain_score"] = float(first["domain_score"]) if "domain_score" in first else np.nan
    data["domain_trees_disagree"] = bool(first.get("domain_trees_disagree", False))
    data["calibrated"] = bool(first.get("calibrated", False))
    # the intervals are those calibrated on another code's spectra (for measured data), not same-code ones
    data["intervals_across_codes"] = any(bool(p.get("across_codes", False)) for p in s.predictions.values())
    cn = s.predictions.get(CN)
    data["cn_raw_probability"] = float(np.max(cn["raw_proba"])) if cn is not None and "raw_proba" in cn else \
        data.get("cn_probability", np.nan)
    return data
