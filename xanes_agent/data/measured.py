"""Measured spectra from the files beamlines write: XDI, Athena projects and column files.

Each reader returns :class:`MeasuredSpectrum` records: energy in eV (ascending; keV converted),
every recorded column by name, and what the file says of the absorber. Which columns make mu is
decided afterwards (:func:`MeasuredSpectrum.mu` with :mod:`.signals`), so a flag can override it.

* **XDI** (XDI/1.0, the XAS community's interchange format): ``# Column.N: name [units]`` fields
  name the columns (energy units eV or keV; an ``angle`` column is refused: convert it with the
  mono d-spacing first), namespaced header fields (``Element.symbol``, ``Element.edge``,
  ``Sample.name`` ...) become metadata, ``# ///`` opens free comments, and the header ends at the
  last comment line before the data.
* **Athena** (``.prj``, gzipped or not; Demeter's project format): a Perl data dump with one
  record per group (``$old_group``, ``@args`` key/value pairs, ``@x`` energy, ``@y`` mu and, where
  kept, ``@i0``/``@signal``). It is read as text with a parser of quoted lists: nothing in it is
  evaluated.
* **column files** (``.dat``, ``.txt``, ``.csv``): whitespace- or comma-separated numbers; column
  names from the last comment line before the data or a first line of words; otherwise columns are
  numbered ``1``, ``2`` ...
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .signals import Signal, choose_signal, find_edge, find_element, find_energy

MAX_BYTES = 256 * 2**20  # a measured spectrum is kilobytes; anything this large is not one


@dataclass
class MeasuredSpectrum:
    """One measured spectrum: ``energy`` (eV, ascending) and the recorded ``columns`` (same order)."""

    name: str
    energy: np.ndarray
    columns: dict[str, np.ndarray]
    format: str
    meta: dict[str, Any] = field(default_factory=dict)
    energy_note: str = ""  # e.g. "converted from keV", "reversed to ascending"

    @property
    def element(self) -> str | None:
        return find_element(self.meta)[0]

    @property
    def edge(self) -> str | None:
        return find_edge(self.meta)[0]

    def signal(self, **names: Any) -> tuple[Signal, str]:
        """The :class:`Signal` for mu (see :func:`.signals.choose_signal`), and a note if guessed."""
        return choose_signal(list(self.columns), **names)

    def mu(self, signal: Signal) -> np.ndarray:
        return np.asarray(signal.mu(self.columns), dtype=float)


class MeasuredFileError(ValueError):
    """A measured-data file that cannot be read: the message names the file and what was wrong."""


def _text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MeasuredFileError(f"{path}: {exc.strerror or exc}") from exc
    if size > MAX_BYTES:
        raise MeasuredFileError(f"{path}: {size / 2**20:.0f} MiB is too large for a spectrum file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(MAX_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise MeasuredFileError(f"{path}: a damaged gzip file ({exc})") from exc
        if len(raw) > MAX_BYTES:
            raise MeasuredFileError(f"{path}: unpacks to more than {MAX_BYTES // 2**20} MiB")
    if b"\x00" in raw[:4096]:
        raise MeasuredFileError(f"{path}: not a text file (binary data)")
    return raw.decode("utf-8", errors="replace")


def _energy_in_ev(path: Path, energy: np.ndarray, units: str | None, columns: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    notes = []
    units = (units or "").strip().lower()
    if units in ("kev",) or (not units and np.nanmedian(energy) < 100):
        energy = energy * 1000.0
        notes.append("converted from keV" if units else "taken as keV (values below 100)")
    elif units not in ("", "ev"):
        raise MeasuredFileError(f"{path}: energy in {units!r}; give it in eV or keV (an angle needs the mono "
                                "d-spacing to convert first)")
    ok = np.isfinite(energy)
    if ok.sum() < 5:
        raise MeasuredFileError(f"{path}: fewer than 5 finite energies")
    order = np.argsort(energy[ok], kind="stable")
    if np.any(np.diff(energy[ok]) < 0):
        notes.append("sorted to ascending energy")
    cols = {k: np.asarray(v, float)[ok][order] for k, v in columns.items()}
    return energy[ok][order], cols, "; ".join(notes)


# -- XDI -----------------------------------------------------------------------------------------

_XDI_FIELD = re.compile(r"^#\s*([A-Za-z][\w]*)\.([\w]+)\s*:\s*(.*?)\s*$")


def read_xdi(path: str | Path) -> list[MeasuredSpectrum]:
    """Read an XDI/1.0 file (see the module docstring)."""
    path = Path(path)
    lines = _text(path).splitlines()
    if not lines or not re.match(r"^#\s*XDI/\d", lines[0]):
        raise MeasuredFileError(f"{path}: not an XDI file (the first line must start with '# XDI/1.0')")
    meta: dict[str, Any] = {"XDI": {"version": lines[0].lstrip("# ").split()[0]}}
    col_names: dict[int, tuple[str, str | None]] = {}
    header_end = 0
    in_comments = False
    last_comment = ""
    for i, line in enumerate(lines[1:], start=1):
        if not line.startswith("#"):
            if line.strip():
                header_end = i
                break
            continue
        body = line[1:].strip()
        if body.startswith("///"):
            in_comments = True
            continue
        if body.startswith("---"):
            in_comments = False
            continue
        m = _XDI_FIELD.match(line)
        if m and not in_comments:
            ns, key, value = m.groups()
            meta.setdefault("XDI", {}).setdefault(ns, {})[key] = value
            if ns.lower() == "column" and key.isdigit():
                parts = value.split()
                if parts:
                    col_names[int(key)] = (parts[0], parts[1] if len(parts) > 1 else None)
        elif in_comments:
            meta.setdefault("comments", []).append(body)
        last_comment = body
    else:
        raise MeasuredFileError(f"{path}: XDI header but no data lines")
    data = _numbers(path, lines[header_end:], header_end)
    ncol = data.shape[1]
    names = [col_names.get(j + 1, (None, None))[0] for j in range(ncol)]
    if not any(names):  # no Column.N fields: the last comment line labels the columns
        guess = last_comment.split()
        names = guess if len(guess) == ncol else [str(j + 1) for j in range(ncol)]
    names = [n or str(j + 1) for j, n in enumerate(names)]
    units = {n: col_names.get(j + 1, (None, None))[1] for j, n in enumerate(names)}
    columns = {n: data[:, j] for j, n in enumerate(names)}
    if any(n.lower() == "angle" for n in names) and find_energy(names) is None:
        raise MeasuredFileError(f"{path}: energy is given as a mono angle; convert it to eV (with Mono.d_spacing) "
                                "first")
    e_name = find_energy(names)
    if e_name is None:
        raise MeasuredFileError(f"{path}: no energy column (columns: {', '.join(names)})")
    energy, columns, note = _energy_in_ev(path, columns[e_name], units.get(e_name), columns)
    columns.pop(e_name)
    flat = {f"{ns}.{k}": v for ns, d in meta["XDI"].items() if isinstance(d, dict) for k, v in d.items()}
    return [MeasuredSpectrum(name=path.name, energy=energy, columns=columns, format="XDI",
                             meta={**meta, **flat}, energy_note=note)]


def _numbers(path: Path, lines: list[str], first: int) -> np.ndarray:
    rows = []
    width = None
    for i, line in enumerate(lines, start=first + 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            vals = [float(v) for v in re.split(r"[,\s;]+", s) if v]
        except ValueError:
            raise MeasuredFileError(f"{path}:{i}: not a row of numbers: {s[:60]!r}") from None
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise MeasuredFileError(f"{path}:{i}: {len(vals)} values where the data has {width} columns")
        rows.append(vals)
    if len(rows) < 5:
        raise MeasuredFileError(f"{path}: fewer than 5 data rows")
    return np.asarray(rows, float)


# -- Athena project ------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:'((?:[^'\\]|\\.)*)'|([^,'\[\]\s]+)|(\[)|(\]))\s*,?""")


def _perl_list(text: str) -> list[Any]:
    """The items of a Perl list literal as Demeter dumps it: quoted strings, bare numbers and
    nested ``[...]`` lists (kept as Python lists). A tokenizer, never an evaluator."""
    stack: list[list[Any]] = [[]]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            pos += 1  # anything else (stray characters) is skipped
            continue
        pos = m.end()
        quoted, bare, opening, closing = m.groups()
        if opening:
            stack.append([])
        elif closing:
            if len(stack) > 1:
                inner = stack.pop()
                stack[-1].append(inner)
        elif quoted is not None:
            stack[-1].append(quoted.replace("\\'", "'").replace("\\\\", "\\"))
        elif bare is not None:
            stack[-1].append(bare)
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].append(inner)
    return stack[0]


def read_athena(path: str | Path) -> list[MeasuredSpectrum]:
    """Every group of an Athena project file (see the module docstring), mu as Athena stored it
    (column ``mu``), and ``i0``/``signal`` where the project kept them."""
    path = Path(path)
    text = _text(path)
    if "Athena project file" not in text[:400]:
        raise MeasuredFileError(f"{path}: not an Athena project file (no 'Athena project file' header line)")
    groups: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("$old_group"):
            current = {"group": (_perl_list(line) or [""])[0]}
            groups.append(current)
        elif current is not None and line.startswith("@"):
            m = re.match(r"@(\w+)\s*=\s*\((.*)\);?\s*$", line)
            if m:
                current[m.group(1)] = _perl_list(m.group(2))
    out = []
    for g in groups:
        args = g.get("args", [])
        meta = dict(zip(args[0::2], args[1::2]))
        label = meta.get("label") or g["group"]
        if (meta.get("datatype", "xmu") not in ("xmu", "") or meta.get("is_chi") == "1" or meta.get("is_xmu") == "0"
                or "x" not in g or "y" not in g):
            continue  # chi(k), xanes-only fits or references without mu(E)
        try:
            x = np.array(g["x"], float)
            cols = {"mu": np.array(g["y"], float)}
            for extra in ("i0", "signal"):
                if len(g.get(extra, [])) == len(x):
                    cols[extra] = np.array(g[extra], float)
        except ValueError as exc:
            raise MeasuredFileError(f"{path}: group {label!r}: {exc}") from None
        if len(cols["mu"]) != len(x):
            raise MeasuredFileError(f"{path}: group {label!r}: {len(x)} energies but {len(cols['mu'])} mu values")
        energy, cols, note = _energy_in_ev(path, x, "eV", cols)
        out.append(MeasuredSpectrum(name=f"{path.name}:{label}", energy=energy, columns=cols, format="Athena",
                                    meta={**meta, "athena_group": g["group"]}, energy_note=note))
    if not out:
        raise MeasuredFileError(f"{path}: no mu(E) group in the project")
    return out


# -- column files --------------------------------------------------------------------------------

def read_columns(path: str | Path, energy_column: str | None = None, energy_units: str | None = None
                 ) -> list[MeasuredSpectrum]:
    """A file of numeric columns (see the module docstring). ``energy_column`` names or numbers
    (1-based) the energy column; by default the one named like an energy, else the first."""
    path = Path(path)
    lines = _text(path).splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")
                  and _is_numeric_row(ln)), None)
    if first is None:
        raise MeasuredFileError(f"{path}: no rows of numbers")
    data = _numbers(path, lines[first:], first)
    ncol = data.shape[1]
    names = None
    for ln in reversed(lines[:first]):
        words = [w for w in re.split(r"[,\s;]+", ln.strip().lstrip("#").strip()) if w]
        if words and len(words) == ncol:
            names = words
            break
        if ln.strip() and not ln.strip().startswith("#"):
            break
    names = names or [str(j + 1) for j in range(ncol)]
    if len(set(names)) != len(names):
        names = [f"{n}_{j + 1}" for j, n in enumerate(names)]
    columns = {n: data[:, j] for j, n in enumerate(names)}
    if energy_column is None:
        e_name = find_energy(names) or names[0]
    elif energy_column in columns:
        e_name = energy_column
    elif energy_column.isdigit() and 1 <= int(energy_column) <= ncol:
        e_name = names[int(energy_column) - 1]
    else:
        raise MeasuredFileError(f"{path}: no column {energy_column!r} (columns: {', '.join(names)})")
    units = energy_units
    if units is None:
        m = re.search(r"\((k?eV)\)|\[(k?eV)\]|_(k?eV)$", e_name, re.IGNORECASE)
        units = next((g for g in m.groups() if g), None) if m else None
    energy, columns, note = _energy_in_ev(path, columns[e_name], units, columns)
    columns.pop(e_name)
    return [MeasuredSpectrum(name=path.name, energy=energy, columns=columns, format="columns", meta={},
                             energy_note=note)]


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in re.split(r"[,\s;]+", line.strip()) if v]
        return True
    except ValueError:
        return False


def read_measured(path: str | Path, energy_column: str | None = None) -> list[MeasuredSpectrum]:
    """Read a measured-spectrum file of any of the formats above, told apart by content (not by
    the file name): XDI, an Athena project (every mu(E) group), or a column file.

    Parameters
    ----------
    path : str or Path
        The file.
    energy_column : str, optional
        Column files: the energy column, by name or 1-based number (default: found by name).

    Returns
    -------
    list of MeasuredSpectrum
        One per spectrum in the file (several for an Athena project).

    Raises
    ------
    MeasuredFileError
        The file cannot be read as any of them; the message names the file, the line and why.
    """
    path = Path(path)
    text = _text(path)
    head = text[:400]
    if re.match(r"^#\s*XDI/\d", head):
        return read_xdi(path)
    if "Athena project file" in head:
        return read_athena(path)
    return read_columns(path, energy_column)
