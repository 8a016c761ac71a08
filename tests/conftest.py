"""Shared fixtures: real files (FEFF outputs from the reference set, a computed library) only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xanes_agent.data.omnixas import default_root

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def omnixas_root() -> Path:
    root = default_root()
    if not root.is_dir():
        pytest.skip(f"OmniXAS reference data not found at {root} (shared/ beside the checkout)")
    return root


@pytest.fixture(scope="session")
def cu_xmu(omnixas_root) -> Path:
    return omnixas_root / "mp-1036393" / "FEFF-XANES" / "015_Cu" / "xmu.dat"


@pytest.fixture(scope="session", autouse=True)
def _headless():
    os.environ.setdefault("MPLBACKEND", "Agg")
