"""``--seed`` reaches every seeded model of a live-like run, the neural baselines included (it once seeded only
Hope's pre-training, so three "seeds" of gru_online in a backtest were one run three times)."""

from __future__ import annotations

import numpy as np
import torch

from learner.pipeline import stream_from_cut
from tests.learner.synthetic import synthetic_panel


def test_stream_from_cut_seeds_the_neural_baselines():
    torch.set_num_threads(1)
    fp = synthetic_panel(T=560, B=2, F=6)

    def run(seed: int) -> np.ndarray:
        return stream_from_cut("gru_online", fp, 480, None, pretrain_steps=3, seed=seed).preds[480:]

    a, b, a2 = run(0), run(1), run(0)
    assert np.isfinite(a).any()
    np.testing.assert_array_equal(a, a2)  # a seed is a seed: the same run again
    assert not np.allclose(a, b, equal_nan=True)  # and another seed is another run
