"""The public API documents its parameters and returns in numpydoc sections (plans, estimators,
agent, readers): checked here, so a new parameter without a word on it fails."""

import inspect

import pytest

from xanes_agent.agent.agent import XANESAgent, agent_factory
from xanes_agent.agent.policy import AdaptivePolicy
from xanes_agent.agent.queue import QueueSuggester
from xanes_agent.agent.store import ModelStore
from xanes_agent.data.measured import read_measured
from xanes_agent.data.readers import (
    read_library,
    read_mp_json,
    read_poscar,
    read_spectrum,
    read_two_column,
    read_xmu,
    write_library,
)
from xanes_agent.models.demo import ensure_demo_model
from xanes_agent.models.ensemble import SeedEnsembleClassifier, SeedEnsembleRegressor
from xanes_agent.plans import adaptive_xanes_scan, opening_passes, xas_ranges_scan, xas_survey_scan
from xanes_agent.plans.xas import measure, xas_fields

# (callable, whether it returns something worth a Returns section)
PUBLIC = [
    (adaptive_xanes_scan, True), (xas_survey_scan, True), (xas_ranges_scan, False), (opening_passes, True),
    (measure, True), (xas_fields, True),
    (SeedEnsembleClassifier, False), (SeedEnsembleRegressor, False),
    (SeedEnsembleClassifier.predict_proba_per_seed, True), (SeedEnsembleRegressor.predict_per_seed, True),
    (XANESAgent, False), (XANESAgent.begin, False), (XANESAgent.end, True), (XANESAgent.ingest, True),
    (XANESAgent.suggest, True), (XANESAgent.report, True), (ModelStore, False), (QueueSuggester, False),
    (AdaptivePolicy, False), (ensure_demo_model, True),
    (read_xmu, True), (read_mp_json, True), (read_two_column, True), (read_poscar, True), (read_spectrum, True),
    (read_library, True), (write_library, False), (read_measured, True),
]


def _params(obj) -> list[str]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]


@pytest.mark.parametrize("obj,returns", PUBLIC, ids=lambda o: getattr(o, "__qualname__", str(o)))
def test_public_api_has_numpydoc_sections(obj, returns):
    doc = inspect.getdoc(obj) or ""
    params = _params(obj)
    if params:
        assert "Parameters\n----------" in doc, f"{obj.__qualname__}: no Parameters section"
        section = doc.split("Parameters\n----------", 1)[1]
        missing = [p for p in params if p not in section]
        assert not missing, f"{obj.__qualname__}: parameters not documented: {missing}"
    if returns:
        assert "Returns\n-------" in doc, f"{obj.__qualname__}: no Returns section"


def test_agent_factory_is_documented():
    assert "RunRouter" in (agent_factory.__doc__ or "")
