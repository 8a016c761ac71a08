"""The OmniXAS Cu K-edge set (Materials Project-style FEFF 9.9.1 spectra with their structures).

Layout: ``<root>/<mp-id>/POSCAR`` and ``<root>/<mp-id>/FEFF-XANES/<site>_Cu/xmu.dat``, ``<site>`` the
0-based index of the absorbing site in the POSCAR. Source: Kharel et al., arXiv:2409.19552
(AI-multimodal/OmniXAS), BSD 3-Clause, Brookhaven Science Associates; the licence travels with
any part of it that the project redistributes (``data/reference/LICENSE-omnixas``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = "omnixas-feff9"


@dataclass(frozen=True)
class OmnixasEntry:
    material_id: str
    site: int
    xmu: Path
    poscar: Path


def default_root() -> Path:
    """``../shared/data/omnixas_cu`` beside the project checkout, or ``$XANES_AGENT_OMNIXAS``."""
    import os

    env = os.environ.get("XANES_AGENT_OMNIXAS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data" / "omnixas_cu"
        if cand.is_dir():
            return cand
    return Path("../shared/data/omnixas_cu")


def iter_entries(root: str | Path | None = None) -> Iterator[OmnixasEntry]:
    """Every (material, site) spectrum under ``root``, in sorted order."""
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        raise FileNotFoundError(f"OmniXAS folder not found: {root} (set XANES_AGENT_OMNIXAS)")
    for mat in sorted(p for p in root.iterdir() if p.is_dir()):
        poscar = mat / "POSCAR"
        for site_dir in sorted((mat / "FEFF-XANES").glob("*_Cu")):
            m = re.match(r"(\d+)_Cu$", site_dir.name)
            xmu = site_dir / "xmu.dat"
            if m and xmu.is_file() and poscar.is_file():
                yield OmnixasEntry(mat.name, int(m.group(1)), xmu, poscar)
