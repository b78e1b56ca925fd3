"""Sizing shared by every position rule: the volatility target, the per-asset cap (no leverage), the tanh gain."""

from __future__ import annotations

import numpy as np

DAILY_TARGET_VOL = 0.02  # per-asset daily vol the sizing aims at (about 38% a year)
CAP = 1.0  # most weight any one asset may get before dividing by B (no leverage)
GAIN = 10.0  # tanh gain on the forecast 24h Sharpe (mu / sigma); typical |mu/sigma| is 0.01..0.2


def vol_scale(var_24h: np.ndarray, n_assets: int, target: float = DAILY_TARGET_VOL, cap: float = CAP) -> np.ndarray:
    """Per-asset weight that targets ``target`` daily vol, capped, split over ``n_assets``; NaN where unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.minimum(cap, target / np.sqrt(var_24h))
    return np.where(np.isfinite(var_24h) & (var_24h > 0), w, np.nan) / n_assets
