"""Synthetic panels with known structure, for tests that need ground truth (real data has none)."""

from __future__ import annotations

import numpy as np

from learner.features import FeaturePanel
from learner.hope.config import HopeConfig


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


def small_cfg(**kw) -> HopeConfig:
    """A Hope small enough for a unit test to stream hundreds of bars in a second: width 8, 4-bar memory chunks,
    two CMS levels (8 and 16 bars) with fast steps, so every part acts within a short synthetic stream."""
    base = dict(
        n_features=6,
        d_model=8,
        d_hidden=8,
        cms_hidden=8,
        chunk_other=4,
        chunk_mem=4,
        cms_periods=(8, 16),
        cms_lr=(0.05, 0.02),
    )
    base.update(kw)
    return HopeConfig(**base)
