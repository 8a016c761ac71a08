"""Queue-server mode: the agent, as its own process, suggests the next plan to a running
``bluesky-queueserver`` instead of acting inside a plan.

``QueueSuggester`` is an ``event_model.DocumentRouter`` fed the RE worker's documents (over 0MQ by
``xanes-agent serve --queue``). Runs that belong together form a **session** (one sample):
runs whose start documents carry the same ``xas_session``; a run without one opens a session keyed
by its own uid. Each session has its own :class:`~xanes_agent.agent.agent.XANESAgent`, which
accumulates every point of every run of the session. When a run of an open session stops, the
suggester

1. asks the session's :class:`~xanes_agent.agent.policy.AdaptivePolicy` (the same policy as
   ``adaptive_xanes_scan``, without its opening passes: the survey is a plan of its own) whether a
   stop rule holds (confident, stable over the decisions after each run, settled with the CN
   undecided, the point budget, nothing new measured by the last suggestion, nothing left to
   propose): if one does, the
   session is closed with that reason (recorded in ``decisions`` and in the agent's own stop
   document); if the edge is not located yet, the session stays open and nothing is suggested (a
   survey of the same session brings it on);
2. else asks the agent for ``batch_size`` ranges and adds ONE ``xas_ranges_scan`` item to the back
   of the queue with ``REManagerAPI.item_add(BPlan(...))``. Its arguments are JSON-safe (device
   names, numbers, lists, strings) and its ``md`` carries ``xas_session`` and ``suggested_by``
   (``agent``, ``agent_uid``, ``proposal_uids``, ``after_run``); the item's user is
   ``xanes-agent``.

It never starts, stops or reorders the queue: an idle queue stays idle until a person (or a queue
autostart they switched on) runs it; and it adds nothing while an earlier suggestion for the same
session is still waiting in the queue. A failed request is recorded and logged, never raised.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..foundation.edges import edge_energy
from .agent import XANESAgent
from .policy import AdaptivePolicy, Stop
from .routing import AGENT_NAME, SafeRouter, is_agent_output
from .spectrum import choose_fields
from .stopping import DEFAULT_STABILITY, DEFAULT_THRESHOLDS
from .store import ModelStore

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One sample's runs, as the suggester sees them."""

    key: str
    element: str
    edge: str
    agent: XANESAgent
    policy: AdaptivePolicy
    xas: dict[str, Any] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    closed: str = ""  # the reason, once closed

    @property
    def n_points(self) -> int:
        return self.agent.n_points


class QueueSuggester(SafeRouter):
    """See the module docstring.

    Parameters
    ----------
    models : ModelStore
    api : REManagerAPI
        A ``bluesky_queueserver_api`` client (zmq or http).
    detectors, motor : str
        Device *names* in the queue server's namespace.
    plan_name : str
        The plan the suggestions run (default ``xas_ranges_scan``).
    batch_size : int
        Ranges per suggested plan.
    thresholds, stability, max_points
        The policy's stop rules (:class:`~xanes_agent.agent.policy.AdaptivePolicy`).
    strategy : str
        The agent's proposal strategy.
    element, edge : str, optional
        Override the start documents.
    emit : callable or iterable, optional
        Receives each session agent's own documents.
    user, user_group : str
        Who the queue items are added as.
    """

    def __init__(self, models: ModelStore, api: Any, *, detectors: Iterable[str] = ("det",),
                 motor: str = "mono_energy", plan_name: str = "xas_ranges_scan", batch_size: int = 2,
                 thresholds: dict[str, float] | None = None, stability: dict[str, float] | None = None,
                 max_points: int = 250,
                 strategy: str = "importance_uncertainty", element: str | None = None, edge: str | None = None,
                 emit: Callable[[str, dict], Any] | Iterable | None = None, user: str = AGENT_NAME,
                 user_group: str = "primary") -> None:
        super().__init__()
        self.models = models
        self.api = api
        self.detectors = [str(d) for d in detectors]
        self.motor = str(motor)
        self.plan_name = plan_name
        self.batch_size = int(batch_size)
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self.stability = {**DEFAULT_STABILITY, **(stability or {})}
        self.max_points = int(max_points)
        self.strategy = strategy
        self.overrides = {"element": element, "edge": edge}
        self.emit = emit
        self.user, self.user_group = user, user_group
        self.uid = str(uuid.uuid4())
        self.sessions: dict[str, Session] = {}
        self._run_session: dict[str, str] = {}
        self._streams: dict[str, tuple[str, str | None, str | None]] = {}  # descriptor -> (session, e, mu)
        self.decisions: list[dict[str, Any]] = []  # every suggestion, skip, closure and failure
        self.errors = 0

    def _decide(self, kind: str, session: Session | None, **info: Any) -> dict[str, Any]:
        d = {"kind": kind, "time": time.time(), "session": session.key if session else None,
             "n_points": session.n_points if session else 0, **info}
        self.decisions.append(d)
        log.info("queue suggester: %s", d)
        return d

    # -- documents ---------------------------------------------------------------------------------
    def start(self, doc: dict) -> None:
        if is_agent_output(doc):
            return  # an agent's own output run
        key = str(doc.get("xas_session") or doc["uid"])
        s = self.sessions.get(key)
        if s is None:
            element = self.overrides["element"] or doc.get("element")
            edge = self.overrides["edge"] or doc.get("edge") or "K"
            if not isinstance(element, str):
                self._decide("ignored", None, run=doc.get("uid"), why="start document has no 'element'")
                return
            agent = XANESAgent(self.models, strategy=self.strategy, emit=self.emit, n_proposals=self.batch_size)
            agent.begin(element, edge, uid=key)
            if agent.in_run is None:
                self._decide("ignored", None, run=doc.get("uid"), why="; ".join(agent.warnings) or "no model")
                return
            policy = AdaptivePolicy(edge_energy(element, edge), opening=False, batch_size=self.batch_size,
                                    max_points=self.max_points, thresholds=self.thresholds, stability=self.stability)
            s = self.sessions[key] = Session(key, element, edge, agent, policy, dict(doc.get("xas") or {}))
        s.runs.append(doc["uid"])
        self._run_session[doc["uid"]] = key

    def descriptor(self, doc: dict) -> None:
        key = self._run_session.get(doc.get("run_start"))
        if key is None:
            return
        s = self.sessions[key]
        # the agent's own rule: named fields, else the eV key and mu, I0/It or If/I0 by name
        detectors = {"i0": s.xas.get("i0_field"), "it": s.xas.get("it_field"), "iff": s.xas.get("if_field"),
                     "mode": s.xas.get("mode")}
        try:
            e_field, signal, guessed = choose_fields(doc, s.xas.get("energy_field"), s.xas.get("mu_field"), detectors)
        except ValueError as exc:
            if doc.get("name", "primary") == "primary":
                log.warning("sample %s: cannot form a spectrum from the primary stream (%s)", key, exc)
            return
        if guessed and doc.get("name", "primary") == "primary":
            log.warning("sample %s: %s", key, guessed)
        self._streams[doc["uid"]] = (key, e_field, signal)

    def event_page(self, doc: dict) -> None:
        key, e_field, signal = self._streams.get(doc.get("descriptor"), (None, None, None))
        if key is None:
            return
        data = doc.get("data", {})
        if e_field not in data or not signal.present_in(data):
            return
        s = self.sessions[key]
        try:
            s.agent.ingest(data[e_field], signal.mu(data))
        except (TypeError, ValueError) as exc:
            self._decide("page_dropped", s, why=str(exc))

    def stop(self, doc: dict) -> None:
        key = self._run_session.pop(doc.get("run_start"), None)
        if key is None:
            return
        s = self.sessions[key]
        if s.closed:
            return
        report = s.agent.report()
        stop = s.policy.observe(report, s.n_points)
        if stop is not None:
            return self._close(s, stop.reason, report)
        if self._waiting(key):
            self._decide("skipped", s, why="a suggestion for this session is still waiting in the queue")
            return
        snap = s.agent.snapshot()
        action = s.policy.propose(report, snap.energy if snap is not None else [], s.agent.suggest)
        if isinstance(action, Stop):
            return self._close(s, action.reason, report)
        if action[0].kind == "survey":
            # the session stays open: a survey (or any run) that reaches the edge brings it on
            self._decide("waiting", s, why="edge not located yet: queue a survey (xas_survey_scan) for this session")
            return
        self._suggest(s, [m.info for m in action], after_run=doc.get("run_start"))

    # -- the queue ---------------------------------------------------------------------------------
    def plan_for(self, s: Session, proposals: list[dict[str, Any]], after_run: str | None) -> dict[str, Any]:
        """The suggested item as plain, JSON-safe data (what ``BPlan`` wraps)."""
        md: dict[str, Any] = {"xas_session": s.key, "element": s.element, "edge": s.edge,
                              "suggested_by": {"agent": AGENT_NAME, "agent_uid": self.uid,
                                               "strategy": s.agent.strategy.name,
                                               "proposal_uids": [p["uid"] for p in proposals],
                                               "scores": [float(p["score"]) for p in proposals],
                                               "after_run": after_run}}
        if s.xas:
            md["xas"] = s.xas
        ranges = [[round(float(p["start"]), 3), round(float(p["stop"]), 3), round(float(p["step"]), 4)]
                  for p in sorted(proposals, key=lambda p: p["start"])]
        return {"name": self.plan_name, "args": [list(self.detectors), self.motor],
                "kwargs": {"ranges": ranges, "md": md}}

    def _suggest(self, s: Session, proposals: list[dict[str, Any]], after_run: str | None) -> None:
        from bluesky_queueserver_api import BPlan

        item = self.plan_for(s, proposals, after_run)
        try:
            resp = self.api.item_add(BPlan(item["name"], *item["args"], **item["kwargs"]),
                                     user=self.user, user_group=self.user_group)
        except Exception as exc:  # noqa: BLE001 - the queue server being away must not end the agent
            self.errors += 1
            self._decide("suggestion_failed", s, plan=item, why=f"{type(exc).__name__}: {exc}")
            return
        self._decide("suggested", s, plan=item, item_uid=(resp.get("item") or {}).get("item_uid"))

    def _waiting(self, key: str) -> bool:
        """Whether an item this agent suggested for session ``key`` is still in the queue."""
        try:
            items = self.api.queue_get().get("items", [])
        except Exception as exc:  # noqa: BLE001
            log.warning("could not read the queue (%s); suggesting anyway", exc)
            return False
        for it in items:
            md = (it.get("kwargs") or {}).get("md") or {}
            if md.get("xas_session") == key and (md.get("suggested_by") or {}).get("agent_uid") == self.uid:
                return True
        return False

    def _close(self, s: Session, reason: str, report: dict[str, Any]) -> None:
        s.closed = reason
        self._decide("closed", s, reason=reason, predictions=report.get("predictions"))
        s.agent.end(reason=reason)

    def close_all(self, reason: str = "agent shut down") -> None:
        for s in self.sessions.values():
            if not s.closed:
                self._close(s, reason, s.agent.report())
