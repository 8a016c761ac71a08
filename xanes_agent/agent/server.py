"""The agent outside the RunEngine: a 0MQ service and an offline replay.

``serve``: subscribes to a bluesky 0MQ proxy's output with a :class:`~.wire.DocumentSubscriber`
(data-only msgpack, never pickle: see :mod:`.wire`), routes runs to one agent per run
(:class:`SafeRunRouter`: a ``RunRouter`` that skips runs joined mid-way) and publishes the agent's
documents back with a bluesky ``Publisher`` (prefix ``b"xanes-agent"``, msgpack) to a proxy input.
It stops after ``max_runs`` runs or on SIGINT/SIGTERM, and logs what it skipped.

With ``queue`` (a queue server's 0MQ control address) the documents go to a
:class:`~xanes_agent.agent.queue.QueueSuggester` instead, which adds the next plan of each sample
to the queue server's queue (see that module); ``max_sessions`` then ends the service after that
many sessions closed.

``replay``: feeds a JSON-lines document file through the same routing.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..documents import JSONLWriter, read_jsonl
from .agent import agent_factory
from .routing import AGENT_NAME, SafeRunRouter, is_agent_output
from .store import ModelStore

log = logging.getLogger(__name__)
AGENT_PREFIX = AGENT_NAME.encode()  # the topic the agent publishes under


def _loopback(address: str) -> str:
    """'HOST:PORT' or 'tcp://HOST:PORT' -> 'tcp://HOST:PORT'; a bare port binds 127.0.0.1 only."""
    if address.isdigit():
        return f"tcp://127.0.0.1:{address}"
    return address if "://" in address else f"tcp://{address}"


def serve(subscribe: str, models: ModelStore, publish: str | None = None, max_runs: int | None = None,
          jsonl: str | Path | None = None, png_dir: str | Path | None = None, ready: Callable[[], Any] | None = None,
          queue: str | None = None, queue_options: dict[str, Any] | None = None, max_sessions: int | None = None,
          **agent_kwargs: Any) -> list[dict]:
    """Run the agent on a live 0MQ stream; returns the summaries of the runs (or, with ``queue``,
    the suggester's decisions) it saw."""
    from bluesky.callbacks.zmq import Publisher

    from .wire import DocumentSubscriber, pack

    outputs: list[Callable[[str, dict], Any]] = []
    publisher = Publisher(_loopback(publish), prefix=AGENT_PREFIX, serializer=pack) if publish else None
    if publisher is not None:
        outputs.append(publisher)
    writer = JSONLWriter(jsonl, append=True) if jsonl else None  # a service's log: kept across restarts
    if writer is not None:
        outputs.append(writer)
    # the agent's own documents come back through the proxy: dropped unread
    subscriber = DocumentSubscriber(_loopback(subscribe), ignore_prefixes=(AGENT_PREFIX,))
    suggester = None
    if queue is not None:
        from bluesky_queueserver_api.zmq import REManagerAPI

        from .queue import QueueSuggester

        suggester = QueueSuggester(models, REManagerAPI(zmq_control_addr=_loopback(queue)), emit=outputs,
                                   **(queue_options or {}), **agent_kwargs)
        router: Callable[[str, dict], Any] = suggester
    else:
        factory = agent_factory(models, emit=outputs, png_dir=png_dir, **agent_kwargs)
        router = SafeRunRouter([factory])
    n_stops = 0

    def count_stops(name: str, doc: dict) -> None:
        nonlocal n_stops
        # a run joined mid-way (start not seen) does not count: the agent saw too little of it
        if name != "stop" or doc.get("run_start") in own_starts or doc.get("run_start") not in seen_starts:
            return
        n_stops += 1
        closed = sum(1 for s in suggester.sessions.values() if s.closed) if suggester else 0
        if (max_runs is not None and n_stops >= max_runs) or (max_sessions is not None and closed >= max_sessions):
            subscriber.stop()

    own_starts: set[str] = set()
    seen_starts: set[str] = set()

    def route(name: str, doc: dict) -> None:
        if name == "start":
            seen_starts.add(doc.get("uid"))
            if is_agent_output(doc):
                own_starts.add(doc["uid"])  # another agent's output
        router(name, doc)
        count_stops(name, doc)

    subscriber.subscribe(route)

    def on_signal(signum, frame):  # noqa: ARG001
        subscriber.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, on_signal)
        except ValueError:  # not in the main thread
            pass
    loaded = models.preload()  # before 'listening': the first run is not kept waiting by a model load
    log.info("models ready for %s", ", ".join(loaded) or "no element")
    # what is loaded now (models, imports) lives as long as the process: out of the cyclic
    # collector's way, so a full collection does not walk it while a fly scan waits on a prediction
    # (benchmarks/agent_latency.py: a 250k-object heap stalled predictions by ~150 ms, p99)
    gc.collect()
    gc.freeze()
    try:
        if ready is not None:
            ready()
        subscriber.run()
    finally:
        gc.unfreeze()  # serve() called in a longer-lived process gives its heap back to the collector
        log.info("serve: %s", subscriber.stats.summary())
        if sum(subscriber.stats.skipped.values()):
            log.warning("serve: %s", subscriber.stats.summary())
        if suggester is not None:
            suggester.close_all()
            suggester.api.close()
        if writer is not None:
            writer.close()
        if publisher is not None:
            publisher.close()
    if suggester is not None:
        return suggester.decisions
    return [a.report() for a in factory.agents]  # type: ignore[attr-defined]


def replay(path: str | Path, models: ModelStore, jsonl: str | Path | None = None, png_dir: str | Path | None = None,
           problems: list[str] | None = None, **agent_kwargs: Any) -> list[Any]:
    """Feed a recorded run (JSON lines) to the agent; returns the agents (one per run).

    Lines that cannot be read are skipped and described in ``problems`` (when given; else they
    raise). A run whose stop document never comes (a file cut short) is closed at the end of the
    file with ``exit_status="fail"`` and reported all the same, and said in ``problems``.
    """
    return replay_documents(read_jsonl(path, problems), str(path), models, jsonl, png_dir, problems, **agent_kwargs)


def replay_documents(documents: Iterable[tuple[str, dict]], source: str, models: ModelStore,
                     jsonl: str | Path | None = None, png_dir: str | Path | None = None,
                     problems: list[str] | None = None, **agent_kwargs: Any) -> list[Any]:
    """Feed recorded ``(name, doc)`` pairs (a file, a Tiled catalog) to the agent, one agent per run."""
    writer = JSONLWriter(jsonl) if jsonl else None
    factory = agent_factory(models, emit=[writer] if writer else None, png_dir=png_dir, **agent_kwargs)
    router = SafeRunRouter([factory])
    try:
        for name, doc in documents:
            router(name, doc)
        for agent in factory.agents:  # type: ignore[attr-defined]
            if agent.in_run is not None:
                if problems is not None:
                    problems.append(f"{source}: run {agent.in_run} has no stop document (cut short?); "
                                    "reported from what it holds")
                agent.end(exit_status="fail", reason="the recording ends before this run's stop document")
    finally:
        if writer is not None:
            writer.close()
    return factory.agents  # type: ignore[attr-defined]
