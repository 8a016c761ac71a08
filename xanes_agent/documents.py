"""Bluesky documents on disk: JSON-lines files, one ``[name, doc]`` per line (event-model compatible).

Shared by the simulator (which records runs) and the agent (which replays them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .foundation.jsonsafe import json_default, json_safe


class JSONLWriter:
    """A callback that writes every document to a JSON-lines file (flushed per document).

    The file is started afresh, so a command's output holds that command's runs only; ``append``
    keeps what the file already holds (a long-running service's log across restarts).
    """

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a" if append else "w")

    def __call__(self, name: str, doc: dict) -> None:
        self._fh.write(json.dumps([name, json_safe(doc)], default=json_default) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


DOCUMENT_NAMES = frozenset({"start", "descriptor", "event", "event_page", "stop", "resource", "datum",
                            "datum_page", "stream_resource", "stream_datum"})


def read_jsonl(path: str | Path, problems: list[str] | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``(name, doc)`` pairs.

    Strict by default: a malformed line raises ``ValueError`` naming file and line. With a
    ``problems`` list, such a line (not JSON, truncated, not ``[name, doc]``, an unknown document
    name) is skipped and described there instead, so one bad line never costs the runs around it.
    """
    path = Path(path)
    with path.open(errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            why = ""
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, ValueError) as exc:
                item, why = None, f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
            if not why:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], dict)):
                    why = "expected [name, doc]"
                elif problems is not None and item[0] not in DOCUMENT_NAMES:
                    why = f"unknown document name {item[0][:40]!r}"
            if why:
                if problems is None:
                    raise ValueError(f"{path}:{lineno}: {why}")
                problems.append(f"{path}:{lineno}: {why}; line skipped")
                continue
            yield item[0], item[1]
