"""Performance measures, in total and per regime."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from learner.evaluation.regimes import Regime
from strategies.metrics import (
    ALL,
    ANNUALISED,
    BARS_PER_YEAR,
    INFERENCE,
    MIN_ANNUALISE_BARS,
    deflate,
    max_drawdown,
    per_regime,
    summarise,
)
from strategies.overfitting import deflated_sharpe_ratio, expected_max_sharpe, sharpe_moments

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
    assert all(s[k] is None for k in ANNUALISED + INFERENCE)  # five hours: nothing annualised, no inference
    assert tuple(s) == ALL
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
        assert s["cagr"] == pytest.approx((1 + s["return"]) ** (BARS_PER_YEAR / n) - 1)
        assert s["annual_vol"] == pytest.approx(net.std(ddof=1) * math.sqrt(BARS_PER_YEAR))
        assert all(s[k] is not None for k in ANNUALISED + INFERENCE if k != "dsr")  # dsr: deflate() fills it


def test_sortino_calmar_and_the_odds_on_known_returns():
    """A 40-day series repeating a 4-hour pattern: every figure worked out from its definition."""
    net = np.tile([0.004, -0.002, 0.003, -0.001], 240)  # 960 bars
    n = net.size
    s = summarise(net, np.ones(n), np.zeros(n), np.zeros(n))
    mean = 0.001
    downside = math.sqrt((0.002**2 + 0.001**2) / 4)  # over all bars, target 0
    assert s["sortino"] == pytest.approx(mean / downside * math.sqrt(BARS_PER_YEAR))
    assert s["sortino"] > s["sharpe"] > 0
    growth = (1.004 * 0.998 * 1.003 * 0.999) ** 240
    assert s["return"] == pytest.approx(growth - 1)
    assert s["cagr"] == pytest.approx(growth ** (BARS_PER_YEAR / n) - 1)
    assert s["max_drawdown"] == pytest.approx(0.002)  # the first -0.2% from the first peak, never deeper
    assert s["calmar"] == pytest.approx(s["cagr"] / 0.002)
    assert s["skew"] == pytest.approx(0.0, abs=1e-9) and s["kurtosis"] < 0  # symmetric, two-valued-ish: thin tails
    assert s["psr"] > 0.999  # a steady gain every 4 hours for 40 days
    lo, hi = s["sharpe_ci"]
    assert lo <= s["sharpe"] <= hi
    flat = summarise(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
    assert flat["sharpe"] is None and flat["sortino"] is None and flat["calmar"] is None and flat["psr"] is None


def _stretch(net: np.ndarray) -> dict:
    return summarise(net, np.ones(net.size), np.zeros(net.size), np.zeros(net.size))


def test_deflate_counts_every_strategy_and_the_declared_trials():
    rng = np.random.default_rng(0)
    t0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    times = t0 + np.arange(2000) * HOUR
    regimes = (
        Regime("a", datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 10, tzinfo=UTC)),
        Regime("b", datetime(2020, 2, 10, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC)),
    )
    nets = {name: rng.normal(mu, 0.01, 2000) for name, mu in (("good", 6e-4), ("meh", 1e-4), ("bad", -2e-4))}

    def doc():
        ones = np.ones(2000)
        return {
            k: {"total": _stretch(v), "per_regime": per_regime(times, v, ones, ones * 0, ones * 0, regimes)}
            for k, v in nets.items()
        }

    strategies = doc()
    trials = deflate(strategies)
    assert (trials["n"], trials["in_run"], trials["declared"]) == (3, 3, None)
    srs = np.array([sharpe_moments(v)[0] for v in nets.values()])
    var = float(np.var(srs, ddof=1))
    scale = math.sqrt(BARS_PER_YEAR)
    assert trials["total"]["sharpe_std"] == pytest.approx(math.sqrt(var) * scale)
    assert trials["total"]["expected_max_sharpe"] == pytest.approx(expected_max_sharpe(3, var) * scale)
    good = strategies["good"]["total"]
    sr, skew, exk = sharpe_moments(nets["good"])
    assert good["dsr"] == pytest.approx(deflated_sharpe_ratio(sr, 2000, skew, exk, 3, var))
    assert good["dsr"] < good["psr"]
    assert set(trials["per_regime"]) == {"a", "b"}
    assert all(strategies[k]["per_regime"][r]["dsr"] is not None for k in nets for r in "ab")
    # declaring more trials (other variants, earlier runs) deflates further; fewer than in the run cannot
    more = doc()
    assert deflate(more, declared=200)["n"] == 200
    assert more["good"]["total"]["dsr"] < good["dsr"]
    fewer = doc()
    assert deflate(fewer, declared=2)["n"] == 3
    assert fewer["good"]["total"]["dsr"] == pytest.approx(good["dsr"])
    # the spread of every variant's Sharpe ratio, declared (annualised), replaces the one measured in the run
    wide, narrow = doc(), doc()
    tw = deflate(wide, declared=110, declared_std=0.75)
    deflate(narrow, declared=110, declared_std=0.25)
    assert tw["total"]["variance_from"].startswith("declared") and tw["total"]["sharpe_std"] == pytest.approx(0.75)
    v = (0.75 / scale) ** 2
    assert wide["good"]["total"]["dsr"] == pytest.approx(deflated_sharpe_ratio(sr, 2000, skew, exk, 110, v))
    assert wide["good"]["total"]["dsr"] < narrow["good"]["total"]["dsr"]


def test_deflate_with_one_strategy_uses_the_sampling_noise():
    net = np.random.default_rng(1).normal(3e-4, 0.01, 5000)
    one = {"only": {"total": _stretch(net), "per_regime": {}}}
    trials = deflate(one, declared=50)
    assert trials["total"]["sharpe_std"] == pytest.approx(math.sqrt(1 / 4999) * math.sqrt(BARS_PER_YEAR))
    assert "sampling noise" in trials["total"]["variance_from"]
    assert one["only"]["total"]["dsr"] < one["only"]["total"]["psr"]
    single = {"only": {"total": _stretch(net), "per_regime": {}}}
    deflate(single)
    assert single["only"]["total"]["dsr"] == pytest.approx(single["only"]["total"]["psr"])  # N = 1: DSR is PSR


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
