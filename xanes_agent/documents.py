"""Bluesky documents on disk: JSON-lines files, one ``[name, doc]`` per line (event-model compatible).

Shared by the simulator (which records runs) and the agent (which replays them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values (anything else becomes its ``str``)."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _clean(o: Any) -> Any:
    # JSON has no NaN/inf: write them as null so that every line is valid JSON for any reader
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, np.generic):
        return _clean(o.item())
    return o


class JSONLWriter:
    """A callback that appends every document to a JSON-lines file (flushed per document)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a")

    def __call__(self, name: str, doc: dict) -> None:
        self._fh.write(json.dumps([name, _clean(doc)], default=json_default) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_jsonl(path: str | Path) -> Iterator[tuple[str, dict]]:
    """Yield ``(name, doc)`` pairs; a malformed line raises ``ValueError`` naming file and line."""
    path = Path(path)
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                name, doc = json.loads(line)
            except (json.JSONDecodeError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a [name, doc] JSON line ({exc})") from None
            if not isinstance(name, str) or not isinstance(doc, dict):
                raise ValueError(f"{path}:{lineno}: expected [name, doc], got {type(name).__name__}, {type(doc).__name__}")
            yield name, doc
