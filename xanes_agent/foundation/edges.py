"""Absorption-edge energies from xraydb (Elam et al. tables), not hard-coded guesses."""

from __future__ import annotations

from functools import cache

#: The absorbers of the study (3d transition metals, K edges in oxides).
ELEMENTS: tuple[str, ...] = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")


@cache
def edge_energy(element: str, edge: str = "K") -> float:
    """Tabulated edge energy in eV (e.g. ``edge_energy("Cu") == 8979.0``)."""
    import xraydb

    try:
        return float(xraydb.xray_edge(element, edge).energy)
    except Exception as exc:  # noqa: BLE001 - xraydb raises ValueError/KeyError/AttributeError
        raise ValueError(f"no tabulated {edge} edge for element {element!r}") from exc
