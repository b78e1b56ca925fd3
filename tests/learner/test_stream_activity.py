"""The activity ``run_stream`` records per bar: a CMS level's step lands on one bar, not on a whole chunk.

A level with period C steps once every C bars (eq. 71), between two calls; the model reports the step's
norm in the next call's ``activity()``. Recorded on every bar of that call (8 with ``chunk=8``), the level
would read as active on 8/C of the bars: 0.33, 0.048, 0.011 for C = 24, 168, 720 instead of 1/C.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.hope.config import HopeConfig
from learner.hope.online import Hope
from learner.stream import run_stream
from tests.learner.synthetic import synthetic_panel


@pytest.fixture(scope="module")
def streamed():
    torch.set_num_threads(1)
    fp = synthetic_panel(T=4 * 720 + 24, B=2, F=6, seed=1)
    cfg = HopeConfig(n_features=6)
    model = Hope(cfg)
    model.reset(len(fp.symbols))
    return cfg, run_stream(model, fp, chunk=8, record_activity=True)


def test_each_cms_level_is_active_on_one_bar_per_period(streamed):
    cfg, res = streamed
    T = res.preds.shape[0]
    for i, period in enumerate(cfg.cms_periods):
        a = res.activity[f"cms_l{i}_update_norm"]  # (T, B)
        steps = np.flatnonzero((a != 0).any(axis=1))
        # the step applied when the clock reached k * period shows on bar k * period, the first bar forecast with it
        assert steps.tolist() == list(range(period, T, period)), f"level {i}"
        assert (a != 0).mean() == pytest.approx(len(steps) / T)


def test_per_call_measures_still_cover_every_bar(streamed):
    _, res = streamed
    # the Titans memory writes every bar: its per-call measures stay on every bar of the call
    for key in ("mem_update_norm", "surprise"):
        assert (res.activity[key] != 0).mean() > 0.99, key
