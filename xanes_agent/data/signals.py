"""From what a beamline records to mu(E): detector signals, column names and metadata conventions.

A transmission experiment records the incident and transmitted intensities, ``mu = ln(I0/It)``; a
fluorescence experiment the incident and fluorescence intensities, ``mu ~ If/I0``; some files and
profiles carry mu itself. :func:`choose_signal` picks one from the names a file or a descriptor
has (the XDI/1.0 column names first, then names common at beamlines), or from what the user named;
:func:`find_element` and :func:`find_edge` read the absorber from metadata under the conventions in
:data:`ELEMENT_KEYS`/:data:`EDGE_KEYS`. Both lists are plain data: a facility adds its own keys
with :func:`add_convention`.

Everything here is pure: names in, a :class:`Signal` (or a reason) out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("mu", "transmission", "fluorescence")

#: Candidate names, compared case-insensitively, in order of preference (XDI/1.0 names first).
ENERGY_NAMES = ["energy", "energy_ev", "e", "en", "ene", "mono_energy", "energy_readback", "dcm_energy"]
MU_NAMES = ["mutrans", "mu", "xmu", "mu_trans", "mu_t", "mufluor", "mu_fluor", "mu_f"]
I0_NAMES = ["i0", "io", "i_0", "izero", "i0_ch", "ion_i0"]
IT_NAMES = ["itrans", "it", "i1", "i_t", "itrans_ch", "ion_it"]
IF_NAMES = ["ifluor", "if", "ff", "fluor", "fluorescence", "pips", "sdd", "mca_sum"]

#: Where a start document (or file header) may name the absorbing element / edge, as dotted paths
#: into nested mappings, compared case-insensitively; flat keys with dots ("Element.symbol") match
#: too. The first that holds a value wins.
ELEMENT_KEYS = ["element", "XDI.Element.symbol", "Element.symbol", "xas.element", "absorbing_element",
                "edge_element", "sample.element", "md.element", "atsym", "bkg_z"]
EDGE_KEYS = ["edge", "XDI.Element.edge", "Element.edge", "xas.edge", "absorption_edge", "edge_name", "fft_edge"]


def add_convention(element_key: str | None = None, edge_key: str | None = None) -> None:
    """Also look for the element/edge under these dotted keys (checked after the built-in ones)."""
    if element_key and element_key not in ELEMENT_KEYS:
        ELEMENT_KEYS.append(element_key)
    if edge_key and edge_key not in EDGE_KEYS:
        EDGE_KEYS.append(edge_key)


def lookup(doc: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of nested mappings (keys compared case-insensitively), or a flat
    key spelled with the dots; None if absent."""
    def get(m: Mapping[str, Any], key: str) -> Any:
        if key in m:
            return m[key]
        low = key.lower()
        return next((v for k, v in m.items() if isinstance(k, str) and k.lower() == low), None)

    flat = get(doc, dotted)
    if flat is not None:
        return flat
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = get(node, part)
        if node is None:
            return None
    return node


def _first(doc: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, str | None]:
    for k in keys:
        v = lookup(doc, k)
        if isinstance(v, str) and v.strip():
            return v.strip(), k
    return None, None


def find_element(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(element symbol, the key it was found under); the symbol is capitalized ("cu" -> "Cu")."""
    v, k = _first(doc, ELEMENT_KEYS)
    return (v[:1].upper() + v[1:].lower() if v else None), k


def find_edge(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(edge name such as "K", the key it was found under)."""
    v, k = _first(doc, EDGE_KEYS)
    return (v.upper() if v else None), k


@dataclass(frozen=True)
class Signal:
    """How mu is formed from recorded fields: ``mode`` and the fields, in this order:
    mu: (mu,); transmission: (I0, It); fluorescence: (If, I0)."""

    mode: str
    fields: tuple[str, ...]

    def describe(self) -> str:
        if self.mode == "transmission":
            return f"transmission ln({self.fields[0]}/{self.fields[1]})"
        if self.mode == "fluorescence":
            return f"fluorescence {self.fields[0]}/{self.fields[1]}"
        return f"mu column {self.fields[0]!r}"

    def mu(self, data: Mapping[str, Any]) -> Any:
        """mu from recorded values (arrays or scalars). A mu field is passed on as it is (the
        spectrum buffer judges each reading); a ratio with a zero or negative intensity is NaN,
        which the buffer drops and counts. Raises ValueError/TypeError on non-numeric intensities."""
        if self.mode == "mu":
            return data[self.fields[0]]
        a, b = (np.asarray(data[f], dtype=float) for f in self.fields)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.mode == "transmission":  # (I0, It)
                return np.where((a > 0) & (b > 0), np.log(a / b), np.nan)
            return np.where(b > 0, a / b, np.nan)  # fluorescence (If, I0)

    def present_in(self, names: Iterable[str]) -> bool:
        have = set(names)
        return all(f in have for f in self.fields)


def _match(names: list[str], candidates: list[str], exclude: Iterable[str] = ()) -> str | None:
    """The first name (as the file spells it) matching a candidate, case-insensitively; a name
    that ends in ``_<candidate>`` (``xspress3_ifluor``) counts after the exact matches."""
    skip = set(exclude)
    low = {n.lower(): n for n in names if n not in skip}
    for c in candidates:
        if c in low:
            return low[c]
    for c in candidates:
        for lname, n in low.items():
            if lname.endswith("_" + c) or lname.endswith("." + c):
                return n
    return None


def find_energy(names: Iterable[str]) -> str | None:
    """The energy field among ``names`` by its name (units are checked by the caller)."""
    return _match(list(names), ENERGY_NAMES)


def choose_signal(names: Iterable[str], mode: str | None = None, mu: str | None = None, i0: str | None = None,
                  it: str | None = None, iff: str | None = None, exclude: Iterable[str] = ()) -> tuple[Signal, str]:
    """The signal to use among the field names ``names``, and a note when it was guessed ("" when
    named). Given names win; otherwise mu columns, then transmission, then fluorescence.

    Raises ValueError naming the fields that were looked for and the ones available.
    """
    names = list(names)
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")

    def need(given: str | None, cands: list[str], what: str) -> str:
        if given is not None:
            if given not in names:
                raise ValueError(f"{what} field {given!r} not found (have: {', '.join(names)})")
            return given
        found = _match(names, cands, exclude)
        if found is None:
            raise ValueError(f"no {what} field (looked for {', '.join(cands)}; have: {', '.join(names)})")
        return found

    if mu is not None or mode == "mu":
        return Signal("mu", (need(mu, MU_NAMES, "mu"),)), ""
    if mode == "transmission" or (mode is None and it is not None):
        return Signal("transmission", (need(i0, I0_NAMES, "I0"), need(it, IT_NAMES, "It"))), ""
    if mode == "fluorescence" or (mode is None and iff is not None):
        return Signal("fluorescence", (need(iff, IF_NAMES, "If"), need(i0, I0_NAMES, "I0"))), ""
    m = _match(names, MU_NAMES, exclude)
    if m is not None:
        return Signal("mu", (m,)), f"mu taken from the field {m!r}"
    i0f = i0 if i0 in names else _match(names, I0_NAMES, exclude)
    itf = _match(names, IT_NAMES, exclude)
    iff_ = _match(names, IF_NAMES, exclude)
    if i0f and itf:
        also = f" (fluorescence {iff_!r} also present: --mode fluorescence to use it)" if iff_ else ""
        return Signal("transmission", (i0f, itf)), f"transmission ln({i0f}/{itf}) from the field names{also}"
    if i0f and iff_:
        return Signal("fluorescence", (iff_, i0f)), f"fluorescence {iff_}/{i0f} from the field names"
    raise ValueError(f"no mu, I0/It or If/I0 fields among {', '.join(names) or 'no fields'} "
                     "(name them: mu, or i0 with itrans or ifluor)")
