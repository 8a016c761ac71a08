"""Routing documents without ever raising into the caller.

A consumer subscribed to a RunEngine or a 0MQ dispatcher must outlive any one document: a failure is
logged (one line; the traceback at debug level) and counted in ``errors``, and the next document is
handled. :class:`SafeRouter` is the ``DocumentRouter`` the agent and the queue suggester build on;
:class:`SafeRunRouter` the ``RunRouter`` that ``serve`` and ``replay`` feed.
"""

from __future__ import annotations

import logging
from typing import Any

from event_model import DocumentRouter, RunRouter

log = logging.getLogger(__name__)

AGENT_NAME = "xanes-agent"  # the ``agent`` key of the agent's own start documents


def is_agent_output(start_doc: dict) -> bool:
    """Whether a start document opens one of the agent's own output runs (echoed back over 0MQ)."""
    return start_doc.get("agent") == AGENT_NAME


class NeverRaise:
    """Mixin before an event-model router: ``__call__`` logs and counts a failure instead of raising."""

    errors: int = 0

    def __call__(self, name: str, doc: dict, validate: bool = False) -> Any:
        try:
            return super().__call__(name, doc, validate)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the scan (or the service) must never die of a consumer
            self.errors += 1
            log.warning("%s: a %r document failed (%s: %s); skipped, %d so far", type(self).__name__, name,
                        type(exc).__name__, exc, self.errors)
            log.debug("failure on a %r document", name, exc_info=True)
            return None


class SafeRouter(NeverRaise, DocumentRouter):
    """A ``DocumentRouter`` that never raises into its caller (see the module docstring)."""


class SafeRunRouter(NeverRaise, RunRouter):
    """A ``RunRouter`` for documents from outside: it skips the documents of a run whose start it
    never saw (the agent started, or its 0MQ subscription took hold, in the middle of that run),
    with one warning per run, and logs instead of raising on any other failure, so no document
    stops a served agent. ``seen_starts``: uids of the runs it routes."""

    def __init__(self, factories: list, **kwargs: Any) -> None:
        super().__init__(factories, **kwargs)
        self.seen_starts: set[str] = set()
        self.joined_late: set[str] = set()  # runs whose start was missed
        self._late_descriptors: set[str] = set()
        self.errors = 0

    def __call__(self, name: str, doc: dict, validate: bool = False) -> Any:
        if not isinstance(name, str) or not isinstance(doc, dict):
            self.errors += 1
            log.warning("skipped a document that is not (name, dict): %s, %s", type(name).__name__,
                        type(doc).__name__)
            return None
        if self._missed_start(name, doc):
            return None
        return super().__call__(name, doc, validate)  # NeverRaise, then RunRouter

    def _missed_start(self, name: str, doc: dict) -> bool:
        if name == "start":
            self.seen_starts.add(doc.get("uid"))
            return False
        if name in ("event", "event_page"):
            return doc.get("descriptor") in self._late_descriptors
        run = doc.get("run_start")
        if name not in ("descriptor", "stop") or run is None or run in self.seen_starts:
            return False  # (a document without run_start goes on to fail, and be logged, as malformed)
        if name == "descriptor":
            self._late_descriptors.add(doc.get("uid"))
        if run not in self.joined_late:
            self.joined_late.add(run)
            log.warning("run %s: its start document was not seen (joined mid-run); its documents are skipped", run)
        return True
