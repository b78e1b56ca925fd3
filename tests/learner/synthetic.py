"""Synthetic panels with known structure, for tests that need ground truth (real data has none)."""

from __future__ import annotations

import numpy as np

from learner.features import FeaturePanel


def synthetic_panel(T: int = 96, B: int = 2, F: int = 6, seed: int = 0) -> FeaturePanel:
    """Random features; targets a fixed linear function of them plus noise; sigma = 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, F)).astype(np.float32)
    w = rng.standard_normal((F, 2)) / np.sqrt(F)
    ret = x @ w + 0.3 * rng.standard_normal((T, B, 2))
    rv = 24 * np.exp(0.5 * x[..., :1] + 0.2 * rng.standard_normal((T, B, 1)))
    y = np.concatenate([ret[..., :1], ret[..., 1:] * 24**0.5, rv], axis=-1)
    ymask = np.ones((T, B, 3), dtype=bool)
    for k, h in enumerate((1, 24, 24)):
        ymask[T - h :, :, k] = False  # the future beyond the panel is unknown
    return FeaturePanel(
        symbols=[f"S{i}/USDT" for i in range(B)],
        times=(np.arange(T, dtype=np.int64) + 420_000) * 3_600_000,
        names=[f"f{i}" for i in range(F)],
        x=x,
        mask=np.ones((T, B), dtype=bool),
        sigma=np.ones((T, B)),
        y=y,
        ymask=ymask,
        close=np.ones((T, B)),
    )
