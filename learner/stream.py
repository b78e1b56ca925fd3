"""The prequential loop every consumer of a model shares: demo, evaluate, backtest, the service.

Bars are fed in calls of ``chunk`` bars aligned to multiples of ``chunk``. After each call the model
receives exactly the targets that became known while those bars closed (a forecast made at bar t for
horizon h is released once bar t+h has closed) — never earlier, and each once. Bars in ``skip``
(held-out weeks) are never streamed: the model sees them as gaps, and no target whose span touches a
skipped bar is ever released.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from learner.features import HORIZONS, TARGETS, FeaturePanel
from learner.protocol import OnlineModel, realised_window

HORIZON_TUPLE = tuple(HORIZONS[k] for k in TARGETS)
# A CMS level steps between two calls (in ``learn``, when the clock reaches a multiple of its period); the next
# call's ``activity()`` reports that step, so it is recorded on that call's first bar, the first forecast made
# with it. Every other key measures the whole call (the Titans memory writes on every bar) and covers its bars.
STEP_KEYS = re.compile(r"cms_l\d+_update_norm")


@dataclass
class StreamResult:
    preds: np.ndarray  # (T, B, 3) forecasts in volatility units; NaN where not predicted
    seconds: float
    bars: int
    activity: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T, B)

    @property
    def steps_per_s(self) -> float:
        return self.bars * self.preds.shape[1] / max(self.seconds, 1e-9)


def release_mask(fp: FeaturePanel, skip: np.ndarray | None) -> np.ndarray:
    """(T, B, K) targets that may ever be released: valid, and spanning no skipped bar."""
    valid = fp.ymask.copy()
    if skip is not None and skip.any():
        c = np.concatenate([[0], np.cumsum(skip.astype(np.int64))])  # c[i] = skipped bars before i
        T = len(skip)
        for k, h in enumerate(HORIZON_TUPLE):
            t = np.arange(T)
            hi = np.minimum(t + h + 1, T)
            touched = (c[hi] - c[t]) > 0  # any skipped bar in [t, t+h]
            valid[..., k] &= ~touched[:, None]
    return valid


def run_stream(
    model: OnlineModel,
    fp: FeaturePanel,
    start: int = 0,
    end: int | None = None,
    chunk: int = 8,
    skip: np.ndarray | None = None,
    learn: bool = True,
    on_chunk: Callable[[int, int, np.ndarray], None] | None = None,
    record_activity: bool = False,
    clock0: int | None = None,
) -> StreamResult:
    """Stream bars [start, end) through ``model`` (already reset or restored).

    ``clock0`` is the bar index that the model's own clock 0 corresponds to (default ``start``): the
    model's first streamed bar. A stream run in segments, or resumed from a checkpoint, passes the same
    ``clock0`` every time so step numbers (chunk and CMS period boundaries) continue seamlessly.
    """
    T, B, _ = fp.x.shape
    end = T if end is None else min(end, T)
    clock0 = start if clock0 is None else clock0
    x = torch.from_numpy(fp.x).transpose(0, 1)  # (B, T, F)
    live = fp.mask & ~skip[:, None] if skip is not None else fp.mask
    m = torch.from_numpy(live).transpose(0, 1)  # (B, T)
    y = torch.from_numpy(fp.y_norm().astype(np.float32)).transpose(0, 1)  # (B, T, K)
    valid = torch.from_numpy(release_mask(fp, skip))  # (T, B, K)
    preds = np.full((T, B, 3), np.nan, dtype=np.float32)
    act: dict[str, np.ndarray] = {}
    t_start = time.perf_counter()
    s = start
    while s < end:
        e = min((s - clock0) // chunk * chunk + chunk + clock0, end)
        p = model.predict(x[:, s:e], m[:, s:e])
        preds[s:e] = p.detach().cpu().numpy().transpose(1, 0, 2)
        if record_activity:
            for k, v in model.activity().items():
                arr = act.setdefault(k, np.zeros((T, B), dtype=np.float32))
                arr[s : s + 1 if STEP_KEYS.fullmatch(k) else e] = v.detach().cpu().numpy()[None, :]
        if learn:
            t0, new = realised_window(s, e, HORIZON_TUPLE, valid)
            t0 = max(t0, clock0)  # nothing before the model's first streamed bar
            new = new[:, t0 - max(0, s - max(HORIZON_TUPLE)) :]
            model.learn(torch.arange(t0, e) - clock0, y[:, t0:e], new)
        if on_chunk is not None:
            on_chunk(s, e, preds[s:e])
        s = e
    return StreamResult(preds, time.perf_counter() - t_start, end - start, act)


def masked(fp: FeaturePanel, skip: np.ndarray) -> FeaturePanel:
    """The panel with held-out bars (and targets spanning them) removed."""
    keep = ~skip[:, None]
    out = copy.copy(fp)
    out.mask = fp.mask & keep
    out.ymask = release_mask(fp, skip)
    out.x = np.where(out.mask[..., None], fp.x, 0.0).astype(np.float32)
    return out
