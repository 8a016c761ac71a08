"""The streaming XANES agent: a Bluesky document consumer that predicts, proposes and reports.

``XANESAgent`` is an ``event_model.DocumentRouter``: give it to ``RE.subscribe`` (in-process), to a
``RunRouter`` (several interleaved runs, one agent per run via :func:`agent_factory`), or to a 0MQ
``RemoteDispatcher`` (``xanes-agent serve``). For each run it

1. reads the element and edge from the start document under the conventions of
   :mod:`xanes_agent.data.signals` (``element``, ``XDI.Element.symbol`` ...), and the fields:
   ``xas.energy_field`` and either ``xas.mu_field`` or detector fields (``xas.i0_field`` with
   ``xas.it_field`` for transmission, ln(I0/It), or ``xas.if_field`` for fluorescence, If/I0);
   constructor arguments override them; what is not named is chosen from the descriptor (the
   eV-unit key; mu, I0/It or If/I0 by name, else the hinted field) and the guess is said once,
2. rebuilds the partial spectrum from ``event_page`` documents natively (single events are packed
   into pages by ``DocumentRouter``), dropping NaN readings and averaging repeated energies,
3. after each page updates the seed-ensemble predictions (fast path) and the proposals,
4. emits its own run (start linked by ``raw_run_uid``, a ``predictions`` descriptor, one event per
   update, stop) to its subscribers.

It also offers the bluesky-adaptive 0.3 agent API for plans: ``ingest``/``tell``, ``suggest``/``ask``
and ``report``. A failure inside the agent is logged and counted, never raised into the RunEngine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.signals import ELEMENT_KEYS, Signal, find_edge, find_element
from ..foundation.edges import edge_energy
from .output import PredictionsRun, event_data
from .predictor import LivePredictor, LiveState
from .routing import SafeRouter, is_agent_output
from .spectrum import PartialSpectrum, choose_fields
from .store import ModelStore
from .strategies import Proposal, Strategy, make_strategy, propose_refining

log = logging.getLogger(__name__)

#: Updates kept per run for views (the view's history panel): the run's memory stays bounded.
HISTORY = 10_000


def _decision_probability(start: dict) -> float | None:
    """The P(CN) the run's plan takes for a decision (``plan_args.stability.cn_probability`` of
    :func:`~xanes_agent.plans.adaptive.adaptive_xanes_scan`), or None where the start document
    carries no such number in (0, 1]: any other run, or a malformed one, which is not an error."""
    args = start.get("plan_args")
    stability = args.get("stability") if isinstance(args, dict) else None
    p = stability.get("cn_probability") if isinstance(stability, dict) else None
    if isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 < float(p) <= 1.0:
        return float(p)
    return None


@dataclass
class RunState:
    uid: str
    element: str
    edge: str
    energy_field: str | None
    mu_field: str | None
    spectrum: PartialSpectrum
    predictor: LivePredictor
    streams: dict[str, str] = field(default_factory=dict)  # descriptor uid -> stream name
    last: LiveState | None = None
    proposals: list[Proposal] = field(default_factory=list)
    pending: dict[str, Proposal] = field(default_factory=dict)  # suggested, not yet measured (by uid)
    done: dict[str, Proposal] = field(default_factory=dict)
    n_updates: int = 0
    last_update: float = 0.0
    readings_at_update: int = 0  # readings the last update saw
    worker: threading.Thread | None = None  # background updates (``background=True``)
    closing: bool = False
    output: Any = None  # the PredictionsRun of this run
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # the last updates' event data
    warned_domain: bool = False
    sample: str = ""  # the start document's sample id, if any
    truth: dict[str, float] = field(default_factory=dict)  # true labels, where the start document carries them
    decision_probability: float | None = None  # the plan's P(CN) for a decision, where its start document says
    stop_reason: str = ""
    signal: Signal | None = None  # how mu is formed from the primary stream's fields
    detectors: dict[str, str | None] = field(default_factory=dict)  # named i0/it/iff fields and mode


@dataclass(frozen=True)
class RunSnapshot:
    """A run as a view sees it: plain data, copied, so the agent may go on. Energies in eV."""

    uid: str
    element: str
    edge: str
    sample: str
    truth: dict[str, float]
    energy: np.ndarray
    mu: np.ndarray
    state: LiveState | None  # the latest update (None before the first)
    model: Any  # the ElementModel
    proposals: tuple[Proposal, ...]
    history: tuple[dict[str, Any], ...]  # the event data of the last updates (at most HISTORY)
    stop_reason: str
    decision_probability: float | None = None  # the plan's P(CN) for a decision (plan_args.stability)

    @classmethod
    def of(cls, r: RunState) -> RunSnapshot:
        e, mu = r.spectrum.arrays()
        return cls(r.uid, r.element, r.edge, r.sample, dict(r.truth), e.copy(), mu.copy(), r.last, r.predictor.model,
                   tuple(r.proposals), tuple(r.history), r.stop_reason, r.decision_probability)


class XANESAgent(SafeRouter):
    """See the module docstring.

    Parameters
    ----------
    models : ModelStore
        Where each element's model comes from.
    strategy : str or Strategy
        How proposals are scored (``agent.strategies.STRATEGIES``; default importance x
        calibrated uncertainty).
    element, edge, energy_field, mu_field, i0_field, it_field, if_field, mode : str, optional
        Override what the start documents say (by default read under the conventions of
        :mod:`xanes_agent.data.signals`, else guessed from the descriptor, said once).
    emit : callable or iterable of callables, optional
        Receives the agent's own ``(name, doc)`` documents (more with :meth:`subscribe`).
    min_interval : float
        Seconds at least between model updates while readings arrive (0: no limit); readings
        that arrive meanwhile are coalesced into the next update.
    update_every : int
        Readings at least between model updates (1: every page or event updates).
    background : bool
        Run the model updates in a worker thread per run, so a document callback only appends
        (microseconds) and returns; the worker updates at the bounded rate on the latest state.
        The stop document waits for it and makes the final update with every reading. (``ingest``
        still updates at once: a plan asks right after telling.)
    n_proposals : int
        Ranges carried in each update's ``proposals`` field.
    png_dir : str or Path, optional
        Save the view of each run here when it stops.
    proposal_step : float or None
        Spacing (eV) of proposed ranges; None: the model grid's own.
    """

    def __init__(self, models: ModelStore, strategy: str | Strategy = "importance_uncertainty",
                 element: str | None = None, edge: str | None = None, energy_field: str | None = None,
                 mu_field: str | None = None, emit: Callable[[str, dict], Any] | Iterable | None = None,
                 min_interval: float = 0.0, n_proposals: int = 3, png_dir: str | Path | None = None,
                 proposal_step: float | None = 1.5, i0_field: str | None = None, it_field: str | None = None,
                 if_field: str | None = None, mode: str | None = None, update_every: int = 1,
                 background: bool = False) -> None:
        super().__init__()
        self.models = models
        self.strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        self.overrides = {"element": element, "edge": edge, "energy_field": energy_field, "mu_field": mu_field,
                          "i0": i0_field, "it": it_field, "iff": if_field, "mode": mode}
        self.subscribers: list[Callable[[str, dict], Any]] = (
            [] if emit is None else [emit] if callable(emit) else list(emit))
        self.min_interval = float(min_interval)
        self.update_every = max(1, int(update_every))
        self.background = bool(background)
        self._wake = threading.Condition()  # guards the spectrum; wakes the worker
        self._update_lock = threading.RLock()  # one update (and its documents) at a time
        self.n_proposals = n_proposals
        # 1.5 eV: the coarsest spacing that still covers the model grid (max gap 1.6 eV); the edge
        # itself is measured finely by the plan's edge pass. None: the model grid's own spacing.
        self.proposal_step = proposal_step
        self.png_dir = Path(png_dir) if png_dir else None
        self.run: RunState | None = None
        self.errors = 0
        self.warnings: list[str] = []
        self.finished: list[dict[str, Any]] = []  # summaries of stopped runs
        self._last: RunSnapshot | None = None  # the last stopped run, for views
        self._unknown_descriptors: set[str] = set()

    def subscribe(self, callback: Callable[[str, dict], Any]) -> None:
        self.subscribers.append(callback)

    def emit(self, name: str, doc: dict) -> None:
        """Send one of the agent's own documents to every subscriber (``DocumentRouter.emit``; the
        subscribers are held strongly, unlike event-model's single weak ``emit``, so a lambda or a
        ``JSONLWriter`` made inline keeps receiving)."""
        for cb in self.subscribers:
            try:
                cb(name, doc)
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop the agent
                self.errors += 1
                log.exception("agent subscriber failed on %s", name)

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        log.warning(msg)

    # -- documents ---------------------------------------------------------------------------------
    def start(self, doc: dict) -> None:
        if is_agent_output(doc):
            return  # our own output coming back over 0MQ
        if self.run is not None and self.run.uid == doc.get("uid"):
            return  # the same start document again (idempotent)
        if self.run is not None:
            # one agent follows one run: interleaved runs need a RunRouter (agent_factory), say so
            self._warn(f"run {self.run.uid}: run {doc.get('uid')} started before its stop document; it is closed "
                       "early with what it holds (for interleaved runs route through "
                       "RunRouter([agent_factory(models)]))")
            self._finish(exit_status="abort", reason="a new run started before this one stopped")
        md_xas = doc.get("xas") if isinstance(doc.get("xas"), dict) else {}
        uid = doc.get("uid")
        element, key = self.overrides["element"], None
        if element is None:
            element, key = find_element(doc)
        edge, edge_key = self.overrides["edge"], None
        if edge is None:
            edge, edge_key = find_edge(doc)
        if not isinstance(element, str):
            self._warn(f"run {uid}: the start document names no element (looked under {', '.join(ELEMENT_KEYS)}; "
                       "give --element, or add the key with xanes_agent.data.signals.add_convention): "
                       "ignoring this run")
            return
        if key not in (None, "element"):
            self._warn(f"run {uid}: element {element} taken from the start document's {key!r}")
        if edge is None:
            edge = "K"
            self._warn(f"run {uid}: no edge in the start document: K edge assumed")
        elif edge_key not in (None, "edge"):
            self._warn(f"run {uid}: edge {edge} taken from the start document's {edge_key!r}")
        predictor = self.models.predictor(element)
        if predictor is None:
            self._warn(f"run {uid}: no usable model for {element}: ignoring this run")
            return
        if str(edge) != predictor.model.edge:
            self._warn(f"run {uid}: {element} {edge}-edge data, but the {element} model is for the "
                       f"{predictor.model.edge} edge: ignoring this run")
            return
        try:
            edge_e = edge_energy(element, edge)
        except ValueError as exc:
            self._warn(f"run {uid}: {exc}: ignoring this run")
            return
        o = self.overrides
        self.run = RunState(
            uid=doc["uid"], element=element, edge=edge,
            energy_field=o["energy_field"] or md_xas.get("energy_field"),
            mu_field=o["mu_field"] or md_xas.get("mu_field"),
            spectrum=PartialSpectrum(edge_energy=edge_e), predictor=predictor,
            detectors={"i0": o["i0"] or md_xas.get("i0_field"), "it": o["it"] or md_xas.get("it_field"),
                       "iff": o["iff"] or md_xas.get("if_field"), "mode": o["mode"] or md_xas.get("mode")})
        sample, truth = doc.get("sample"), doc.get("sample_truth")
        self.run.sample = str(sample.get("id", "")) if isinstance(sample, dict) else str(sample or "")
        if isinstance(truth, dict):  # the simulator's ground truth, for the view only
            self.run.truth = {k: float(v) for k, v in truth.items() if isinstance(v, (int, float))}
        self.run.decision_probability = _decision_probability(doc)
        self._open_output(doc)
        if self.background:
            self.run.worker = threading.Thread(target=self._work, args=(self.run,), daemon=True,
                                               name=f"xanes-agent-{self.run.uid[:8]}")
            self.run.worker.start()

    def _open_output(self, raw_start: dict) -> None:
        r = self.run
        r.output = PredictionsRun(raw_start, r.uid, r.element, r.edge, r.predictor.model, self.strategy.name)
        for name, doc in r.output.opening():
            self.emit(name, doc)

    def descriptor(self, doc: dict) -> None:
        r = self.run
        if r is None or doc.get("run_start") != r.uid:
            return
        name = doc.get("name", "primary")
        r.streams[doc["uid"]] = name
        if name != "primary" or r.signal is not None:
            return  # the spectrum comes from the primary stream; its first descriptor decides
        keys = list(doc.get("data_keys", {}))
        try:
            r.energy_field, r.signal, guessed = choose_fields(doc, r.energy_field, r.mu_field, r.detectors)
        except ValueError as exc:
            self._warn(f"run {r.uid}: cannot form a spectrum from the primary stream ({exc}; fields: "
                       f"{', '.join(keys)}); set xas.energy_field with xas.mu_field or xas.i0_field/it_field/"
                       "if_field in the start document, or give them as flags: no predictions for this run")
            return
        r.mu_field = r.signal.fields[0] if r.signal.mode == "mu" else None
        if guessed:
            self._warn(f"run {r.uid}: {guessed} (name the fields in xas.* of the start document to be sure)")

    def event_page(self, doc: dict) -> None:
        self._readings(doc)

    def event(self, doc: dict) -> None:
        # handled as it comes (a page of one), not packed into a page first: a fly scan's single
        # events cost an append each
        self._readings(doc)

    def _readings(self, doc: dict) -> None:
        r = self.run
        if r is None or doc.get("descriptor") not in r.streams:
            if doc.get("descriptor") not in self._unknown_descriptors:
                self._unknown_descriptors.add(doc.get("descriptor"))
                log.warning("events of descriptor %s, which no run of this agent declared (joined mid-run, or "
                            "a run closed early): skipped", doc.get("descriptor"))
            return
        data = doc.get("data", {})
        if r.signal is None or r.energy_field not in data or not r.signal.present_in(data):
            return  # another stream (e.g. baseline), or a run whose fields could not be found
        try:
            with self._wake:
                r.spectrum.add(data[r.energy_field], r.signal.mu(data))
                if r.worker is not None:
                    self._wake.notify()
                    return
        except (TypeError, ValueError) as exc:
            self._warn(f"run {r.uid}: malformed event page ({exc}); page dropped, data so far kept")
            return
        if self._due(r):
            with self._update_lock:
                self._update()

    def stop(self, doc: dict) -> None:
        if self.run is None or doc.get("run_start") != self.run.uid:
            return
        self._stop_worker(self.run)
        with self._update_lock:
            self._update()  # the final update: every reading of the run
            self._finish(exit_status=doc.get("exit_status", "success"))

    # -- the update rate ---------------------------------------------------------------------------
    def _pending(self, r: RunState) -> int:
        return r.spectrum.n_readings - r.readings_at_update

    def _due(self, r: RunState) -> bool:
        return self._pending(r) >= self.update_every and time.monotonic() - r.last_update >= self.min_interval

    def _work(self, r: RunState) -> None:
        """The background worker of run ``r``: update when due, on the latest state."""
        while True:
            with self._wake:
                while not r.closing and not self._due(r):
                    wait = None  # until readings arrive
                    if self._pending(r) >= self.update_every:  # due but for the rate limit
                        wait = max(1e-4, self.min_interval - (time.monotonic() - r.last_update))
                    self._wake.wait(wait)
                if r.closing:
                    return
            try:
                with self._update_lock:
                    if self.run is r:
                        self._update()
            except Exception:  # noqa: BLE001 - the worker must outlive any one update
                self.errors += 1
                log.exception("run %s: a background update failed; continuing", r.uid)

    def _stop_worker(self, r: RunState) -> None:
        if r.worker is None or r.worker is threading.current_thread():
            return
        with self._wake:
            r.closing = True
            self._wake.notify_all()
        r.worker.join(timeout=60)
        if r.worker.is_alive():
            log.error("run %s: the background update did not finish within 60 s", r.uid)
        r.worker = None

    # -- core --------------------------------------------------------------------------------------
    def _update(self) -> LiveState | None:
        r = self.run
        if r is None:
            return None
        with self._wake:  # a consistent view of the spectrum; appending goes on after this
            e, mu = r.spectrum.arrays()
            n_readings = r.spectrum.n_readings
        state = r.predictor.update(e, mu)
        r.last = state
        r.last_update = time.monotonic()
        r.readings_at_update = n_readings
        r.n_updates += 1
        if state.edge_located:
            r.proposals = propose_refining(self.strategy, state.e0, e, r.predictor.model, state.predictions,
                                           n=self.n_proposals, step=self.proposal_step)
        else:
            r.proposals = []
        data = event_data(state, r.predictor.model, r.spectrum, r.proposals, n_readings)
        self._check_domain(data, state, r)
        r.history.append(data)
        self.emit("event", r.output.event(data))
        return state

    def _check_domain(self, data: dict[str, Any], s: LiveState, r: RunState) -> None:
        if not data["in_domain"] and not r.warned_domain and s.coverage_fraction >= 0.99:
            r.warned_domain = True
            first = next(iter(s.predictions.values()))  # the model's own verdict
            spread = f"spread {data.get('distance_tree_std', float('nan')):.3f} A"
            if first.get("domain_far", True):
                limit = self._far_limit(r, s.coverage_fraction)
                why = (f"the spectrum is unlike the {r.element} model's training spectra (domain score "
                       f"{data['domain_score']:.2f}, limit {limit:.2f}); its intervals are widened")
            elif first.get("domain_trees_disagree", False):
                why = (f"the {r.element} model's distance trees disagree on this spectrum ({spread}, beyond what "
                       "in-family spectra show), so the answer rests on splits the training spectra do not settle")
            else:  # the two tests together (DomainModel.flags)
                why = (f"the spectrum lies near the edge of the {r.element} model's training spectra (domain score "
                       f"{data['domain_score']:.2f}) and its distance trees disagree there ({spread}): together "
                       "more than in-family spectra show")
            self._warn(f"run {r.uid}: out of domain: {why}; treat the predictions with care")

    @staticmethod
    def _far_limit(r: RunState, coverage: float) -> float:
        cal = r.predictor.model.calibration
        if cal is None or cal.domain is None:
            return float("nan")
        return float(cal.domain.far_limit(np.array([coverage]))[0])

    def _finish(self, exit_status: str = "success", reason: str = "") -> None:
        r = self.run
        if r is None:
            return
        self._stop_worker(r)
        r.stop_reason = reason or exit_status
        if r.spectrum.summary():  # one line per run, not one per reading
            self._warn(f"run {r.uid}: {r.spectrum.summary()}")
        if self.png_dir is not None:
            try:
                from .view import save_png

                self.png_dir.mkdir(parents=True, exist_ok=True)
                save_png(RunSnapshot.of(r), self.png_dir / f"agent_{r.uid[:8]}.png")
            except Exception:  # noqa: BLE001 - a plotting problem never costs the run
                self.errors += 1
                log.exception("could not save the agent PNG")
        self.emit("stop", r.output.stop(exit_status, reason))
        self.finished.append(self.report())
        self._last = RunSnapshot.of(r)
        self.run = None

    # -- for views and callers --------------------------------------------------------------------
    @property
    def in_run(self) -> str | None:
        """The uid of the run being followed, or None between runs."""
        return self.run.uid if self.run is not None else None

    @property
    def n_points(self) -> int:
        """Distinct energies of the current run (0 between runs)."""
        return len(self.run.spectrum) if self.run is not None else 0

    def snapshot(self) -> RunSnapshot | None:
        """The current run (else the last stopped one) as a :class:`RunSnapshot`; None before any."""
        return RunSnapshot.of(self.run) if self.run is not None else self._last

    # -- bluesky-adaptive style API ----------------------------------------------------------------
    def begin(self, element: str, edge: str = "K", uid: str = "adaptive", md: dict[str, Any] | None = None) -> None:
        """Start a document-less session (for ``ingest``/``suggest`` without a RunEngine).

        Parameters
        ----------
        element : str
            The absorber, e.g. ``"Cu"``.
        edge : str
            The edge, default ``"K"``.
        uid : str
            The session's uid (the raw run's, inside a plan).
        md : dict, optional
            The run's metadata as a start document would carry it (sample, sample_truth, ...).
        """
        self.start({**(md or {}), "uid": uid, "element": element, "edge": edge, "time": time.time()})

    def end(self, exit_status: str = "success", reason: str = "") -> dict[str, Any]:
        """Close a session begun with :meth:`begin`.

        Parameters
        ----------
        exit_status : str
            ``"success"``, ``"abort"`` or ``"fail"``, as in the stop document.
        reason : str
            Why it ended (the stop document's ``reason``).

        Returns
        -------
        dict
            The final :meth:`report`.
        """
        if self.run is not None:
            self._finish(exit_status=exit_status, reason=reason)
        return self.finished[-1] if self.finished else {}

    def ingest(self, x, y, uid: str | None = None) -> LiveState | None:
        """Tell the agent what was measured; it updates its predictions and proposals.

        Parameters
        ----------
        x : array-like
            Energies (eV).
        y : array-like
            mu at those energies (NaN readings are dropped and counted, never fatal).
        uid : str, optional
            The proposal these readings answer (marked as measured).

        Returns
        -------
        LiveState or None
            The state after the update.
        """
        if self.run is None:
            raise RuntimeError("no run in progress: call begin() or feed a start document first")
        with self._wake:
            self.run.spectrum.add(x, y)
        if uid is not None and uid in self.run.pending:
            self.run.done[uid] = self.run.pending.pop(uid)
        with self._update_lock:
            return self._update()

    tell = ingest

    def suggest(self, batch_size: int = 1) -> list[dict[str, Any]]:
        """Ask the agent where to measure next.

        Parameters
        ----------
        batch_size : int
            How many ranges.

        Returns
        -------
        list of dict
            Ranges ``{"start", "stop", "step"}`` (absolute eV) with ``uid`` and ``score``, best
            first; empty before the edge is located or when the model window is covered.
        """
        r = self.run
        if r is None:
            return []
        if r.last is None or not r.last.edge_located:
            return []
        e, _ = r.spectrum.arrays()
        props = propose_refining(self.strategy, r.last.e0, e, r.predictor.model, r.last.predictions,
                                 n=batch_size, step=self.proposal_step)
        for p in props:
            r.pending[p.uid] = p
        return [p.as_dict() for p in props]

    ask = suggest

    def report(self) -> dict[str, Any]:
        """The current answer as plain data (the last stopped run's between runs).

        Returns
        -------
        dict
            ``predictions`` (per property: prediction, calibrated probability or 68/90 %
            intervals, domain flag), ``n_points``, ``coverage``, ``e0`` (eV), ``edge_located``,
            ``proposals``, dropped/rejected counts and ``charge_label``.
        """
        r = self.run
        if r is None:
            return self.finished[-1] if self.finished else {}
        s = r.last
        out: dict[str, Any] = {"raw_run_uid": r.uid, "element": r.element, "n_points": len(r.spectrum),
                               "n_dropped": r.spectrum.n_dropped, "n_rejected": r.spectrum.n_rejected,
                               "unit_note": r.spectrum.unit_note,
                               "errors": self.errors, "n_updates": r.n_updates,
                               "charge_label": getattr(r.predictor.model.properties.get("charge"), "label", None)}
        if s is not None:
            out.update(e0=s.e0, edge_located=s.edge_located, coverage=s.coverage_fraction,
                       normalization_confident=s.normalization_confident, note=s.normalization_note,
                       predictions={k: {kk: (np.asarray(vv).tolist()) for kk, vv in v.items()}
                                    for k, v in s.predictions.items()},
                       proposals=[p.as_dict() for p in r.proposals])
            first = next(iter(s.predictions.values()), {})
            if "in_domain" in first:
                out.update(in_domain=bool(first["in_domain"]), domain_score=float(first["domain_score"]),
                           domain_far=bool(first.get("domain_far", not first["in_domain"])),
                           domain_trees_disagree=bool(first.get("domain_trees_disagree", False)))
        return out


def agent_factory(models: ModelStore, **kwargs: Any) -> Callable[[str, dict], tuple[list, list]]:
    """A ``RunRouter`` factory: one :class:`XANESAgent` per run, so interleaved runs stay apart.

    RunRouter hands each agent the run's start document, then the rest of that run only.
    """
    agents: list[XANESAgent] = []

    def factory(name: str, start_doc: dict):
        if is_agent_output(start_doc):
            return [], []  # an agent's own output run: nothing to predict
        agent = XANESAgent(models, **kwargs)
        agents.append(agent)
        return [agent], []

    factory.agents = agents  # type: ignore[attr-defined]
    return factory
