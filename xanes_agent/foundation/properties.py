"""The one registry of what the models predict and what the data labels are.

Every name, unit, short document-field name and stop-threshold key is read from here: the
agent's documents, the live view, the CLI tables, the report and the stop rules all agree.

A ``charge`` model predicts whichever charge label its training data carried (a Bader charge, else
the formal oxidation state; a FEFF charge transfer where its own model is not trained); only the
charges are in e: an oxidation state is a formal number and has no unit. Beside it, a
``feff_charge_transfer`` model predicts FEFF's computed charge (e) where the data carry it: a second
charge, reported and calibrated like the others but not deciding (:attr:`Property.decides`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Property:
    """A predicted property."""

    name: str  # the model's key, e.g. "mean_nn_distance"
    kind: str  # "classifier" or "regressor"
    short: str  # field prefix in the agent's event documents, e.g. "distance"
    title: str  # for people, e.g. "mean NN distance"
    unit: str  # ASCII, as in document data keys ("" for none)
    symbol: str  # as printed and plotted ("" for none)
    threshold: str  # the key of its stop threshold (``agent.stopping.DEFAULT_THRESHOLDS``)
    stability: str  # the key of its stability tolerance (``DEFAULT_STABILITY``), "" for CN (must match)
    # whether the plans' stop rules and the measurement proposals use it; one that does not is
    # predicted, calibrated and reported, but a scan neither waits for it nor measures for it
    decides: bool = True

    def unit_for(self, label: str | None = None, display: bool = False) -> str:
        """The unit of this property when it predicts data label ``label`` (``""`` for an
        oxidation state, which is not a charge)."""
        if label is not None and not LABELS.get(label, self.unit):
            return ""
        return self.symbol if display else self.unit


CN = "coordination_number"
DISTANCE = "mean_nn_distance"
CHARGE = "charge"
FEFF_CHARGE = "feff_charge_transfer"

PROPERTIES: dict[str, Property] = {
    CN: Property(CN, "classifier", "cn", "coordination number", "", "", "cn_probability", ""),
    DISTANCE: Property(DISTANCE, "regressor", "distance", "mean NN distance", "Angstrom", "Å", "distance_std",
                       "distance"),
    CHARGE: Property(CHARGE, "regressor", "charge", "charge", "e", "e", "charge_std", "charge"),
    # the absorber's charge from FEFF's self-consistent density (Norman sphere, core hole in):
    # learnable from the spectra only in part (R^2 0.15-0.51 on held-out parents, session 20), so
    # it informs and never decides
    FEFF_CHARGE: Property(FEFF_CHARGE, "regressor", "feff_charge", "FEFF charge transfer", "e", "e", "", "",
                          decides=False),
}
#: The regressors, in the order tables and figures show them.
REGRESSORS: tuple[str, ...] = tuple(n for n, p in PROPERTIES.items() if p.kind == "regressor")
#: The properties a scan's stop rules and proposals use (:attr:`Property.decides`).
DECIDING: tuple[str, ...] = tuple(n for n, p in PROPERTIES.items() if p.decides)


def decides(name: str) -> bool:
    """Whether property ``name`` steers and stops scans (:attr:`Property.decides`); a name this
    registry does not know (a bundle from another version) is taken to."""
    return name not in PROPERTIES or PROPERTIES[name].decides


#: Data labels a spectrum may carry, with their units ("" for none).
LABELS: dict[str, str] = {
    "coordination_number": "",
    "mean_nn_distance": "Angstrom",
    "oxidation_state": "",  # a formal number, not a charge
    "feff_charge_transfer": "e",
    "bader_charge": "e",
    # FEFF's ground-state SCF (the RPA core-hole set's): a charge no model trains on yet
    "feff_ground_charge_transfer": "e",
}
#: Labels a library written before they existed may lack (read as unknown, NaN).
LATER_LABELS: tuple[str, ...] = ("feff_ground_charge_transfer",)
LABEL_NAMES: tuple[str, ...] = tuple(LABELS)
#: Labels a ``charge`` model may be trained on, in order of preference when none is asked for (the
#: FEFF charge transfer only for a model without its own :data:`FEFF_CHARGE` property).
CHARGE_LABELS: tuple[str, ...] = ("bader_charge", "feff_charge_transfer", "oxidation_state")


def charge_title(label: str | None) -> str:
    """What to call the ``charge`` prediction of a model trained on ``label``."""
    return "oxidation state" if label == "oxidation_state" else (label or "charge").replace("_", " ")
