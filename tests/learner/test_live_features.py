"""The live service's bar-by-bar features equal ``build_features`` over every bar so far.

Real Binance bars of the 8 bundled symbols (SOL listed inside the range, so it starts late), with gaps cut
in on purpose (single bars, a 30-bar hole, a bar missing for every symbol at once); each bar's features,
mask, volatility scale and liquidity, and every target as soon as it is realised, equal the batch
computation over the whole history to float rounding. A state saved and loaded mid-stream continues the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from continuum.config import BUNDLED_DATA
from ingest.replay import load_panel
from learner.features import build_features
from learner.live_features import IncrementalFeatures


@pytest.fixture(scope="module")
def panel():
    p = load_panel(BUNDLED_DATA, None, "1h", datetime(2020, 7, 20, tzinfo=UTC), datetime(2020, 9, 30, tzinfo=UTC))
    rng = np.random.default_rng(3)
    for f in ("open", "high", "low", "close", "volume"):
        setattr(p, f, getattr(p, f).copy())
    holes = [(t, b) for t, b in zip(rng.integers(0, len(p.times), 60), rng.integers(0, 8, 60), strict=True)]
    holes += [(t, 2) for t in range(500, 530)] + [(t, b) for t in (900,) for b in range(8)]
    for t, b in holes:
        for f in ("open", "high", "low", "close", "volume"):
            getattr(p, f)[t, b] = np.nan
    p.present = np.isfinite(p.close)
    return p


def _bar(panel, t: int) -> np.ndarray:
    return np.stack([getattr(panel, f)[t] for f in ("open", "high", "low", "close", "volume")])


def test_bar_by_bar_equals_build_features_over_all_bars(panel):
    want = build_features(panel)
    T = len(panel.times)
    assert T > 1500 and not panel.present[:100, panel.symbols.index("SOL/USDT")].any()  # listed later
    assert want.mask.sum() > 0.9 * T * 8 - 168 * 8 and (~want.mask[200:]).sum() > 90  # gaps were cut in
    inc = IncrementalFeatures(panel.symbols)
    for t in range(T):
        inc.step(int(panel.times[t]), _bar(panel, t))
        fp, _mark = inc.tail(1)
        np.testing.assert_array_equal(fp.mask[0], want.mask[t], err_msg=f"mask at bar {t}")
        np.testing.assert_allclose(fp.x[0], want.x[t], rtol=1e-5, atol=1e-5, err_msg=f"x at bar {t}")
        np.testing.assert_allclose(fp.sigma[0], want.sigma[t], rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(fp.adv[0], want.adv[t], rtol=1e-9, equal_nan=True)
        if t % 97 == 0 or t == T - 1:  # the targets realised so far, over the tail
            fp, mark = inc.tail(25)
            n = len(fp.times)
            for i in range(n):
                b = t - n + 1 + i
                known = np.array([b + 1 <= t, b + 24 <= t, b + 24 <= t])
                np.testing.assert_array_equal(fp.ymask[i], want.ymask[b] & known, err_msg=f"ymask {b} at {t}")
                np.testing.assert_allclose(fp.y[i], np.where(fp.ymask[i], want.y[b], 0.0), rtol=1e-9, atol=1e-12)
            assert np.isfinite(mark[-1]).all() or not panel.present[: t + 1].all(0).all()


def test_state_round_trip_continues_identically(panel):
    a, b = IncrementalFeatures(panel.symbols), IncrementalFeatures(panel.symbols)
    for t in range(800):
        a.step(int(panel.times[t]), _bar(panel, t))
    b.load({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.state().items()})
    for t in range(800, 1000):
        a.step(int(panel.times[t]), _bar(panel, t))
        b.step(int(panel.times[t]), _bar(panel, t))
    fa, fb = a.tail(25)[0], b.tail(25)[0]
    assert fa.x.tobytes() == fb.x.tobytes() and fa.y.tobytes() == fb.y.tobytes()
