"""The live agent: Bluesky documents in, predictions with uncertainty and next-range proposals out.

``XANESAgent`` acts inside a plan or on a document stream; ``QueueSuggester`` (``queue``) suggests
the next plan to a bluesky-queueserver instead.
"""

from .agent import ModelStore, SafeRouter, XANESAgent, agent_factory
from .predictor import LivePredictor, LiveState, locate_edge
from .queue import QueueSuggester
from .spectrum import PartialSpectrum
from .strategies import STRATEGIES, Proposal, Strategy, make_strategy, propose_refining

__all__ = ["LivePredictor", "LiveState", "ModelStore", "PartialSpectrum", "Proposal", "QueueSuggester", "STRATEGIES",
           "SafeRouter", "Strategy", "XANESAgent", "agent_factory", "locate_edge", "make_strategy", "propose_refining"]
