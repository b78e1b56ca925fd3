"""Performance measures, in total and per regime."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from learner.evaluation.regimes import Regime
from strategies.metrics import ANNUALISED, BARS_PER_YEAR, MIN_ANNUALISE_BARS, max_drawdown, per_regime, summarise

HOUR = 3_600_000


def test_summary_on_known_returns():
    net = np.array([0.1, -0.5, 0.5, 0.0, 0.2])
    exposure = np.array([1.0, 1.0, 0.5, 0.0, 1.0])
    turnover = np.array([1.0, 0.0, 0.5, 0.5, 0.4])  # 2.4 over 5 hours
    cost = turnover * 1e-3
    s = summarise(net, exposure, turnover, cost, gross=net + cost)
    assert s["gross_return"] == pytest.approx(np.prod(1 + net + cost) - 1)
    assert s["return"] == pytest.approx(1.1 * 0.5 * 1.5 * 1.0 * 1.2 - 1)
    assert s["max_drawdown"] == pytest.approx(0.5)  # 1.1 -> 0.55
    assert s["hit_rate"] == pytest.approx(3 / 4)  # the flat bar is not counted
    assert s["turnover"] == pytest.approx(2.4 / (5 / 24))
    assert all(s[k] is None for k in ANNUALISED)  # five hours: nothing annualised
    assert s["costs"] == pytest.approx(2.4e-3)
    assert s["bars"] == 5
    flat = summarise(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4))
    assert flat["sharpe"] is None and flat["hit_rate"] is None and flat["return"] == 0.0


def test_annualised_figures_only_for_30_days_or_more():
    """A 4-bar stretch would annualise to absurd numbers (CAGR ~1e13, Sharpe ~37): None below 720 bars."""
    assert MIN_ANNUALISE_BARS == 720
    short = summarise(np.array([0.02, 0.03, -0.01, 0.04]), np.ones(4), np.zeros(4), np.zeros(4))
    assert all(short[k] is None for k in ANNUALISED)
    assert short["return"] == pytest.approx(1.02 * 1.03 * 0.99 * 1.04 - 1) and short["max_drawdown"] > 0
    assert short["turnover"] == 0.0 and short["bars"] == 4
    rng = np.random.default_rng(0)
    for n, annualised in ((MIN_ANNUALISE_BARS - 1, False), (MIN_ANNUALISE_BARS, True)):
        net = rng.normal(1e-4, 1e-2, n)
        s = summarise(net, np.ones(n), np.full(n, 0.1), np.zeros(n))
        assert s["return"] == pytest.approx(np.prod(1 + net) - 1) and s["turnover"] == pytest.approx(2.4)
        if not annualised:
            assert all(s[k] is None for k in ANNUALISED), n
            continue
        assert s["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(BARS_PER_YEAR))
        assert s["annual_return"] == pytest.approx((1 + s["return"]) ** (BARS_PER_YEAR / n) - 1)
        assert s["annual_vol"] == pytest.approx(net.std(ddof=1) * math.sqrt(BARS_PER_YEAR))


def test_max_drawdown_of_a_curve():
    assert max_drawdown(np.array([1, 1.2, 0.6, 0.9, 1.5])) == pytest.approx(0.5)
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_per_regime_splits_bars_by_decision_time():
    t0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    times = t0 + np.arange(48) * HOUR
    regimes = (
        Regime("a", datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 12, tzinfo=UTC)),
        Regime("b", datetime(2020, 1, 1, 12, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)),
        Regime("c", datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)),  # not covered
    )
    net = np.where(np.arange(48) < 12, 0.01, -0.01)
    ones = np.ones(48)
    out = per_regime(times, net, ones, ones * 0.1, ones * 1e-4, regimes)
    assert list(out) == ["a", "b"]
    assert out["a"]["bars"] == 12 and out["b"]["bars"] == 36
    assert out["a"]["return"] == pytest.approx(1.01**12 - 1)
    assert out["b"]["return"] == pytest.approx(0.99**36 - 1)
    assert out["a"]["hit_rate"] == 1.0 and out["b"]["hit_rate"] == 0.0
    assert out["b"]["max_drawdown"] == pytest.approx(1 - 0.99**36)
    total = summarise(net, ones, ones * 0.1, ones * 1e-4)
    assert (1 + total["return"]) == pytest.approx((1 + out["a"]["return"]) * (1 + out["b"]["return"]))
