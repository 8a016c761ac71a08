"""Plain JSON from NumPy-laden data: what documents, bundles and reports write."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values (anything else becomes its ``str``)."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def json_safe(o: Any) -> Any:
    """``o`` with NaN/inf as ``None`` and NumPy values as Python ones: JSON has no NaN, so every
    line written stays valid JSON for any reader."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_safe(o.tolist())
    if isinstance(o, np.generic):
        return json_safe(o.item())
    return o
