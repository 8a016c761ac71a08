"""The live agent: Bluesky documents in, predictions with uncertainty and next-range proposals out.
``XANESAgent`` acts inside a plan or on a document stream; ``QueueSuggester`` (``queue``) suggests
the next plan to a bluesky-queueserver instead; ``AdaptivePolicy`` (``policy``) decides what to
measure next and when to stop, for the plan, the suggester and the benchmark alike.

The names below load on first use, so a plan that needs only the policy (a queue-server worker)
does not import scikit-learn.
"""

from importlib import import_module

_WHERE = {"ModelStore": "store", "XANESAgent": "agent", "SafeRouter": "routing", "agent_factory": "agent",
          "LivePredictor": "predictor", "LiveState": "predictor", "locate_edge": "predictor",
          "QueueSuggester": "queue", "PartialSpectrum": "spectrum", "STRATEGIES": "strategies",
          "Proposal": "strategies", "Strategy": "strategies", "make_strategy": "strategies",
          "propose_refining": "strategies", "AdaptivePolicy": "policy"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
