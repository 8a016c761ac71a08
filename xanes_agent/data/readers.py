"""Readers (and the one writer) for the spectrum formats the project accepts.

Every reader raises :class:`~xanes_agent.data.errors.DataFormatError` naming the file and line on
malformed input; none of them returns a half-parsed spectrum.

Formats
-------
FEFF ``xmu.dat``          ``#`` header lines, then columns omega (eV), e, k, mu, mu0, chi
Materials Project JSON    ``spectrum.x``/``spectrum.y`` or top-level ``x``/``y``, ``absorbing_element``,
                          ``edge``, optional ``structure`` (pymatgen dict) and ``labels``
two-column text / CSV     energy (eV), mu; ``#`` comments and one optional text header line
VASP POSCAR               crystal structure (through pymatgen)
library ``.npz``          the project's own versioned format (see :func:`write_library`)
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.properties import LATER_LABELS
from .collection import LABEL_NAMES, Spectrum, SpectrumCollection
from .errors import DataFormatError

LIBRARY_FORMAT = "xanes-agent-library"
LIBRARY_FORMAT_VERSION = 1

_ELEMENT_IN_PATH = re.compile(r"(?:^|[_/])([A-Z][a-z]?)(?:$|[_/])")


def _check_energy(path: str | Path, energy: np.ndarray, mu: np.ndarray, first_line: int | None = None) -> None:
    if len(energy) < 2:
        raise DataFormatError(path, f"need at least 2 data points, found {len(energy)}", first_line)
    bad = ~(np.isfinite(energy) & np.isfinite(mu))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            path, "non-finite energy or mu value", None if first_line is None else first_line + row
        )
    steps = np.diff(energy)
    if np.any(steps <= 0):
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise DataFormatError(
            path,
            f"energies must increase strictly (found {energy[row - 1]:.4f} then {energy[row]:.4f} eV)",
            None if first_line is None else first_line + row,
        )


def _parse_table(path: str | Path, text: str, min_cols: int, sep: str | None = None) -> tuple[np.ndarray, int]:
    """Parse whitespace/comma separated numeric rows after ``#`` comments; return (rows, first data line)."""
    rows: list[list[float]] = []
    first: int | None = None
    header_allowed = True
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p for p in re.split(r"[,\s;]+", line) if p] if sep is None else line.split(sep)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if header_allowed and not rows:
                header_allowed = False  # one text header line (e.g. "energy,mu") is allowed
                continue
            raise DataFormatError(path, f"expected numbers, got {line[:60]!r}", lineno) from None
        if len(values) < min_cols:
            raise DataFormatError(path, f"expected at least {min_cols} columns, found {len(values)}", lineno)
        if first is None:
            first = lineno
        rows.append(values[:min_cols] if min_cols else values)
    if not rows:
        raise DataFormatError(path, "no data rows found")
    return np.array(rows, dtype=float), int(first or 1)


def _read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "file not found")
    try:
        return p.read_text()
    except UnicodeDecodeError as exc:
        raise DataFormatError(p, f"not a text file ({exc.reason})") from None


def read_xmu(path: str | Path, element: str | None = None, edge: str = "K") -> Spectrum:
    """Read a FEFF ``xmu.dat``: absolute energy (omega, eV) and ``mu`` (normalized at edge + 50 eV).

    Parameters
    ----------
    path : str or Path
        The ``xmu.dat`` file.
    element : str, optional
        The absorber; otherwise from the header's ``Abs Z=`` line, or from a ``<site>_<El>``
        folder name as in Materials Project FEFF trees.
    edge : str
        Absorption edge, default ``"K"``.

    Returns
    -------
    Spectrum
        Energy in eV (absolute), mu, element and edge; provenance names the file.

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    text = _read_text(path)
    header = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    if not header:
        raise DataFormatError(path, "no '#' header lines: not a FEFF xmu.dat", 1)
    table, first = _parse_table(path, text, min_cols=6)
    energy, mu = table[:, 0], table[:, 3]
    _check_energy(path, energy, mu, first)
    if element is None:
        element = _element_from_header(header) or _element_from_path(path)
    if element is None:
        raise DataFormatError(path, "cannot tell the absorbing element: pass element=...")
    version = next((m.group(0) for h in header if (m := re.search(r"FEFF\s*[\d.]+", h))), "FEFF")
    return Spectrum(
        energy=energy, mu=mu, element=element, edge=edge,
        provenance={"file": str(path), "format": "feff-xmu", "code": version.strip()},
        id=str(path),
    )


def _element_from_header(header: list[str]) -> str | None:
    for h in header:
        m = re.search(r"Abs\s+Z=\s*(\d+)", h)
        if m:
            from xraydb import atomic_symbol

            z = int(m.group(1))
            if not 1 <= z <= 98:  # xraydb's tables end at Cf; anything else is no element
                return None
            return atomic_symbol(z)
    return None


def _element_from_path(path: str | Path) -> str | None:
    from xraydb import atomic_number

    for part in reversed(Path(path).parts[:-1]):
        for token in re.split(r"[_\-.]", part):
            if token and token[0].isupper() and len(token) <= 2:
                try:
                    atomic_number(token)
                    return token
                except Exception:  # noqa: BLE001 - xraydb raises plain errors for unknown symbols
                    continue
    return None


def read_mp_json(path: str | Path) -> Spectrum:
    """Read a Materials Project XAS document (``XASDoc`` JSON) or a list holding one.

    Parameters
    ----------
    path : str or Path
        The JSON file.

    Returns
    -------
    Spectrum
        Energy (eV), mu, absorbing element and edge, and the labels the document carries.

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None
    if isinstance(doc, list):
        if len(doc) != 1:
            raise DataFormatError(path, f"expected one XAS document, found a list of {len(doc)}")
        doc = doc[0]
    if not isinstance(doc, dict):
        raise DataFormatError(path, "expected a JSON object (Materials Project XAS document)")
    return spectrum_from_mp_doc(doc, source=str(path))


def spectrum_from_mp_doc(doc: dict[str, Any], source: str = "<document>") -> Spectrum:
    """Build a :class:`Spectrum` from an already-parsed Materials Project XAS document."""
    spec = doc.get("spectrum", doc)
    if not isinstance(spec, dict):
        raise DataFormatError(source, "'spectrum' must be an object with 'x' and 'y'")
    for key in ("x", "y"):
        if key not in spec:
            raise DataFormatError(source, f"missing '{key}' (energies in 'x', mu in 'y')")
    try:
        energy = np.asarray(spec["x"], dtype=float)
        mu = np.asarray(spec["y"], dtype=float)
    except (TypeError, ValueError):
        raise DataFormatError(source, "'x' and 'y' must be lists of numbers") from None
    if energy.ndim != 1 or energy.shape != mu.shape:
        raise DataFormatError(source, f"'x' and 'y' must be equal-length lists, got {energy.shape} and {mu.shape}")
    _check_energy(source, energy, mu)
    element = doc.get("absorbing_element", spec.get("absorbing_element"))
    if not isinstance(element, str):
        raise DataFormatError(source, "missing 'absorbing_element'")
    edge = str(doc.get("edge", spec.get("edge", "K")))
    structure = None
    sdict = doc.get("structure", spec.get("structure"))
    if sdict is not None:
        try:
            from pymatgen.core import Structure

            structure = Structure.from_dict(sdict)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types; report the cause
            raise DataFormatError(source, f"'structure' is not a valid pymatgen structure: {exc}") from None
    raw_labels = doc.get("labels") or {}
    if not isinstance(raw_labels, dict):
        raise DataFormatError(source, f"'labels' must be an object of name: number, got {type(raw_labels).__name__}")
    try:
        labels = {k: float(v) for k, v in raw_labels.items() if k in LABEL_NAMES}
    except (TypeError, ValueError):
        raise DataFormatError(source, "'labels' values must be numbers") from None
    mid = doc.get("material_id", doc.get("task_id", ""))
    return Spectrum(
        energy=energy, mu=mu, element=element, edge=edge, labels=labels, structure=structure,
        provenance={"file": source, "format": "materials-project-json", "material_id": str(mid),
                    "absorbing_index": doc.get("absorbing_index")},
        id=str(doc.get("xas_id", mid or source)),
    )


def read_two_column(path: str | Path, element: str, edge: str = "K") -> Spectrum:
    """Read plain two-column text or CSV: energy (eV), mu. Extra columns are ignored.

    Parameters
    ----------
    path : str or Path
        The text file (``#`` comments allowed).
    element : str
        The absorber (the file carries none).
    edge : str
        Absorption edge, default ``"K"``.

    Returns
    -------
    Spectrum

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    text = _read_text(path)
    table, first = _parse_table(path, text, min_cols=2)
    energy, mu = table[:, 0], table[:, 1]
    _check_energy(path, energy, mu, first)
    return Spectrum(energy=energy, mu=mu, element=element, edge=edge,
                    provenance={"file": str(path), "format": "two-column"}, id=str(path))


def read_poscar(path: str | Path) -> Any:
    """Read a VASP POSCAR into a pymatgen ``Structure`` (needs the ``feff`` extra).

    Parameters
    ----------
    path : str or Path
        The POSCAR file.

    Returns
    -------
    pymatgen.core.Structure

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    text = _read_text(path)
    try:
        from pymatgen.io.vasp import Poscar

        return Poscar.from_str(text).structure
    except ImportError as exc:
        raise ImportError("reading POSCAR files needs pymatgen: pip install 'xanes-agent[feff]'") from exc
    except Exception as exc:  # noqa: BLE001 - pymatgen raises ValueError/IndexError/...; say which file
        raise DataFormatError(path, f"not a valid POSCAR: {type(exc).__name__}: {exc}") from None


def read_spectrum(path: str | Path, element: str | None = None, edge: str = "K") -> Spectrum:
    """Read one spectrum, choosing the reader from the file name (``xmu.dat``, ``.json``, else text).

    Parameters
    ----------
    path : str or Path
        A FEFF ``xmu.dat``, a Materials Project JSON document or a two-column text file.
    element : str, optional
        The absorber (required for two-column files).
    edge : str
        Absorption edge, default ``"K"``.

    Returns
    -------
    Spectrum

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    p = Path(path)
    if p.name.endswith("xmu.dat"):
        return read_xmu(p, element=element, edge=edge)
    if p.suffix.lower() == ".json":
        return read_mp_json(p)
    if element is None:
        raise DataFormatError(p, "two-column files carry no element: pass element=...")
    return read_two_column(p, element=element, edge=edge)


# -- the project's library format --------------------------------------------------------------------

def write_library(collection: SpectrumCollection, path: str | Path) -> None:
    """Write a collection as a compressed ``.npz`` that loads without pickle.

    Spectra keep their native grids: energies are stored as float32 offsets from a float64 start
    per spectrum (sub-meV precision at 9 keV), mu as float32, concatenated with an offsets array.
    The write is atomic (a temporary file renamed into place).

    Parameters
    ----------
    collection : SpectrumCollection
        The spectra, their labels and metadata.
    path : str or Path
        The ``.npz`` file to write (its folder is created).
    """
    n = len(collection)
    lengths = np.array([len(e) for e in collection.energy], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    e_start = np.array([e[0] for e in collection.energy], dtype=np.float64) if n else np.zeros(0)
    energy_rel = (
        np.concatenate([e - s for e, s in zip(collection.energy, e_start)]).astype(np.float32)
        if n else np.zeros(0, np.float32)
    )
    mu = np.concatenate(list(collection.mu)).astype(np.float32) if n else np.zeros(0, np.float32)
    meta = dict(collection.meta)
    meta.update(format=LIBRARY_FORMAT, format_version=LIBRARY_FORMAT_VERSION)
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "ids": collection.ids.astype(str),
        "element": collection.element.astype(str),
        "edge": collection.edge.astype(str),
        "source": collection.source.astype(str),
        "material_id": collection.material_id.astype(str),
        "split": collection.split.astype(str),
        "provenance": collection.provenance.astype(str),
        "offsets": offsets,
        "e_start": e_start,
        "energy_rel": energy_rel,
        "mu": mu,
    }
    for k in LABEL_NAMES:
        arrays[f"label_{k}"] = collection.labels[k].astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)  # atomic: an interrupted write never leaves a half library behind


def read_library(path: str | Path) -> SpectrumCollection:
    """Read the project's library ``.npz`` (see :func:`write_library`), validated before use.

    Parameters
    ----------
    path : str or Path
        The library file.

    Returns
    -------
    SpectrumCollection

    Raises
    ------
    DataFormatError
        The file is not of this format or is damaged; the message names the file and, where it
        can, the line.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "library file not found")
    if not zipfile.is_zipfile(p):  # np.load would guess a pickle and say so, which misleads
        raise DataFormatError(p, "not a readable .npz library: not a zip archive (truncated or another format?)")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - zipfile/ValueError: name the file
        raise DataFormatError(p, f"not a readable .npz library: {exc}") from None
    with z:
        try:
            meta = json.loads(str(z["meta"]))
        except KeyError:
            raise DataFormatError(p, "no 'meta' entry: not an xanes-agent library") from None
        if meta.get("format") != LIBRARY_FORMAT:
            raise DataFormatError(p, f"format is {meta.get('format')!r}, expected {LIBRARY_FORMAT!r}")
        if meta.get("format_version") != LIBRARY_FORMAT_VERSION:
            raise DataFormatError(
                p, f"library format version {meta.get('format_version')} is not supported "
                f"(this xanes-agent reads version {LIBRARY_FORMAT_VERSION})")
        try:
            offsets = z["offsets"]
            e_start = z["e_start"]
            energy_rel = z["energy_rel"].astype(np.float64)
            mu_flat = z["mu"].astype(np.float64)
            n = len(offsets) - 1
            # offsets index the flat arrays: they must start at 0, never decrease, end at their length
            if (offsets.ndim != 1 or n < 0 or not np.issubdtype(offsets.dtype, np.integer)
                    or (n >= 0 and (offsets[0] != 0 or offsets[-1] != len(mu_flat)))
                    or np.any(np.diff(offsets) < 2) or len(energy_rel) != len(mu_flat) or len(e_start) != n):
                raise DataFormatError(p, "corrupt library: spectrum offsets do not match the stored arrays")
            if not (np.all(np.isfinite(mu_flat)) and np.all(np.isfinite(energy_rel)) and np.all(np.isfinite(e_start))):
                raise DataFormatError(p, "corrupt library: non-finite energies or mu")
            energy = np.empty(n, dtype=object)
            mu = np.empty(n, dtype=object)
            for i in range(n):
                a, b = offsets[i], offsets[i + 1]
                energy[i] = energy_rel[a:b] + e_start[i]
                mu[i] = mu_flat[a:b]
            return SpectrumCollection(
                ids=z["ids"], element=z["element"], edge=z["edge"], energy=energy, mu=mu,
                labels={k: (z[f"label_{k}"].astype(np.float64) if k not in LATER_LABELS or f"label_{k}" in z.files
                            else np.full(n, np.nan)) for k in LABEL_NAMES},
                source=z["source"], material_id=z["material_id"], split=z["split"],
                provenance=z["provenance"], meta=meta,
            )
        except KeyError as exc:
            raise DataFormatError(p, f"library is missing the array {exc.args[0]!r}") from None
