"""The live agent: Bluesky documents in, predictions with uncertainty and next-range proposals out."""

from .agent import ModelStore, XANESAgent, agent_factory
from .predictor import LivePredictor, LiveState, locate_edge
from .spectrum import PartialSpectrum
from .strategies import STRATEGIES, Proposal, Strategy, make_strategy

__all__ = ["LivePredictor", "LiveState", "ModelStore", "PartialSpectrum", "Proposal", "STRATEGIES", "Strategy",
           "XANESAgent", "agent_factory", "locate_edge", "make_strategy"]
