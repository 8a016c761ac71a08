"""Errors raised for malformed input; they name the file and, where possible, the line."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A file or document does not have the expected format.

    The message always names the source (a path or a document description) and, when known, the
    1-based line number, so a user can open the file at the offending place.
    """

    def __init__(self, source: str | Path, message: str, line: int | None = None) -> None:
        self.source = str(source)
        self.line = line
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")
