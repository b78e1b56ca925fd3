"""Strict JSON for reports other tools read: NaN/inf become null, numpy scalars become Python numbers."""

from __future__ import annotations

import math
from typing import Any


def jsonsafe(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: jsonsafe(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [jsonsafe(v) for v in o]
    if hasattr(o, "item"):  # numpy scalar
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o
