"""The backtest engine: hand-computed equity, exact costs, gaps, and no look-ahead."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from continuum.jsonsafe import jsonsafe
from learner.evaluation.regimes import DEFAULT_REGIMES, Regime
from learner.protocol import to_raw
from strategies.backtest import backtest_from_preds, bar_returns, run_backtest
from strategies.metrics import ANNUALISED
from strategies.positions import STRATEGIES, signal_sign, vol_target_long
from strategies.report import table

NAN = np.nan
HOUR = 3_600_000


def test_five_bar_toy_matches_hand_computation():
    """Two assets, a gap in the second on bar 2, 10 bps fee; every number below worked out on paper."""
    close = np.array([[100, 50], [110, 50], [99, NAN], [99, 60], [108.9, 66]], dtype=float)
    target = np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 0.5], [0.3, 0.3]])
    times = np.arange(5) * HOUR
    res = run_backtest(times, close, target, start=0, fee_bps=10, slippage_bps=0)
    rate = 0.001
    # returns booked per bar: asset 0 +10%, -10%, 0, +10%; asset 1 0, (gap) 0, 60/50-1 = +20%, +10%
    np.testing.assert_allclose(bar_returns(close)[:4], [[0.1, 0], [-0.1, 0], [0, 0.2], [0.1, 0.1]])
    # bar 0: buy half of each; bar 1: rebalance the drift [.55, .5]/1.05 back to halves;
    # bar 2: asset 1 has no bar, so its drifted .5/.95 is kept while asset 0 goes to 1.0;
    # bar 3: from [.95, .6]/1.05 to [0, .5]. The last bar has no next close, so it is not traded.
    turnover = [1.0, 0.05 / 1.05, 0.5 / 0.95, 1.025 / 1.05]
    gross = [0.05, -0.05, 0.1 / 0.95, 0.05]
    np.testing.assert_allclose(res.turnover, turnover)
    np.testing.assert_allclose(res.gross, gross)
    np.testing.assert_allclose(res.weights[2], [1.0, 0.5 / 0.95])
    net = [(1 - rate * u) * (1 + g) - 1 for u, g in zip(turnover, gross, strict=True)]
    np.testing.assert_allclose(res.net, net)
    np.testing.assert_allclose(res.equity, np.concatenate([[1.0], np.cumprod(1 + np.array(net))]))
    prices = 1.05 * 0.95 * (1.05 / 0.95) * 1.05  # gross growth of the four bars
    costs = (1 - rate) * (1 - rate * 0.05 / 1.05) * (1 - rate * 0.5 / 0.95) * (1 - rate * 1.025 / 1.05)
    assert res.equity[-1] == pytest.approx(prices * costs, rel=1e-12)
    np.testing.assert_array_equal(res.mark_times, times[:5])


def test_costs_take_exactly_turnover_times_rate():
    """Same trades with and without costs: every bar's equity differs by the factor (1 - turnover x rate)."""
    rng = np.random.default_rng(0)
    T, B = 400, 3
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, B)), axis=0))
    close[rng.random((T, B)) < 0.05] = NAN  # gaps
    target = rng.uniform(-0.3, 0.3, (T, B))
    target[rng.random((T, B)) < 0.1] = NAN  # "no order" bars
    times = np.arange(T) * HOUR
    free = run_backtest(times, close, target, 5, fee_bps=0, slippage_bps=0)
    paid = run_backtest(times, close, target, 5, fee_bps=10, slippage_bps=2)
    np.testing.assert_array_equal(free.turnover, paid.turnover)
    assert free.turnover.sum() > 10
    np.testing.assert_allclose(paid.net, (1 - free.turnover * 12e-4) * (1 + free.net) - 1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(paid.equity[1:] / free.equity[1:], np.cumprod(1 - free.turnover * 12e-4))
    np.testing.assert_allclose(paid.cost.sum(), free.turnover.sum() * 12e-4)
    assert paid.equity[-1] < free.equity[-1]


def test_no_trade_on_missing_bar_and_band():
    close = np.array([[1.0, 1.0], [1.0, NAN], [1.0, 1.0], [1.0, 1.0]])
    target = np.array([[0.2, 0.2], [0.5, 0.5], [0.51, 0.5], [0.2, 0.2]])
    res = run_backtest(np.arange(4) * HOUR, close, target, 0, fee_bps=0, slippage_bps=0, band=0.05)
    np.testing.assert_allclose(res.weights, [[0.2, 0.2], [0.5, 0.2], [0.5, 0.5]])  # .51 vs .5: inside the band


def _oracle(fp, lag: int) -> np.ndarray:
    """Forecasts whose 24h return is the *next hour's* realised return, shifted ``lag`` bars later."""
    preds = np.full(fp.y.shape, NAN, dtype=np.float32)
    z = np.where(fp.ymask[..., 0], fp.y[..., 0] / (fp.sigma * 24**0.5), 0.0)
    preds[200:, :, 1] = z[200 - lag : len(z) - lag]
    preds[200:, :, 0] = 0.0
    preds[200:, :, 2] = 0.0
    return preds


def test_future_returns_as_forecasts_are_detectably_impossible(fp):
    """Positions at t earn close t -> t+1: a forecast equal to that return wins nearly every bar, while the
    same forecast one bar later (when it is actually known) is an ordinary, losing-or-flat signal."""
    future, _ = backtest_from_preds(fp, _oracle(fp, 0), DEFAULT_REGIMES, 0, 0, strategies=["signal_sign"])
    known, _ = backtest_from_preds(fp, _oracle(fp, 1), DEFAULT_REGIMES, 0, 0, strategies=["signal_sign"])
    f, k = future["strategies"]["signal_sign"]["total"], known["strategies"]["signal_sign"]["total"]
    assert f["hit_rate"] > 0.97 and f["sharpe"] > 30
    assert k["hit_rate"] < 0.55 and abs(k["sharpe"]) < 10
    assert f["return"] != k["return"]


def test_positions_and_equity_ignore_the_future(fp):
    """Changing everything after bar k (prices and forecasts) changes no position or equity up to k."""
    rng = np.random.default_rng(1)
    preds = np.where(np.isfinite(_oracle(fp, 1)), rng.normal(0, 0.3, fp.y.shape), NAN).astype(np.float32)
    k = 1500
    raw = to_raw(preds, fp.sigma)
    tradable = np.isfinite(fp.close)
    close2 = fp.close.copy()
    close2[k + 1 :] *= rng.uniform(0.5, 1.5, close2[k + 1 :].shape)
    preds2 = preds.copy()
    preds2[k + 1 :] = rng.normal(0, 1, preds2[k + 1 :].shape)
    raw2 = to_raw(preds2, fp.sigma)
    for name, s in STRATEGIES.items():
        a, b = s.fn(raw, tradable, 200), s.fn(raw2, tradable, 200)
        np.testing.assert_array_equal(a[: k + 1], b[: k + 1], err_msg=name)
        r1 = run_backtest(fp.times, fp.close, a, 200)
        r2 = run_backtest(fp.times, close2, b, 200)
        n = k - 200  # decisions at bars < k earn returns up to close k, which is unchanged
        np.testing.assert_array_equal(r1.weights[: n + 1], r2.weights[: n + 1], err_msg=name)
        np.testing.assert_array_equal(r1.equity[: n + 1], r2.equity[: n + 1], err_msg=name)
        assert not np.array_equal(r1.equity[n + 2 :], r2.equity[n + 2 :]), name  # the perturbation did bite


def test_sizing_is_capped_and_vol_targeted():
    raw = np.zeros((3, 2, 3))
    raw[..., 1] = [[0.01, -0.01], [0.0, 0.02], [NAN, 0.01]]
    raw[..., 2] = [[0.02**2, 0.04**2], [1e-8, 0.01**2], [0.01, NAN]]
    w = vol_target_long(raw, np.ones((3, 2), bool), 0)
    np.testing.assert_allclose(w, [[0.5, 0.25], [0.5, 0.5], [0.1, NAN]])  # cap 1/B; no forecast -> keep (NaN)
    s = signal_sign(raw, np.ones((3, 2), bool), 0)
    np.testing.assert_allclose(s, [[0.5, -0.25], [0.0, 0.5], [NAN, NAN]])
    t = STRATEGIES["signal_tanh"].fn(raw, np.ones((3, 2), bool), 0)
    assert np.all(np.abs(t[:2]) <= 0.5) and np.isnan(t[2]).all()
    np.testing.assert_allclose(t[0], [0.5 * np.tanh(10 * 0.01 / 0.02), -0.25 * np.tanh(10 * 0.01 / 0.04)])


def test_a_regime_under_30_days_has_no_annualised_figures(fp):
    """A 4-bar regime: its totals stay, but CAGR/Sharpe/vol are None, null in the JSON and "—" in the table."""
    t = datetime.fromtimestamp(int(fp.times[300]) / 1000, tz=UTC)
    regimes = (
        Regime("blip", t, t + timedelta(hours=4)),
        Regime("rest", t + timedelta(hours=4), datetime(2019, 5, 1, tzinfo=UTC)),
    )
    doc, _ = backtest_from_preds(fp, _oracle(fp, 1), regimes, strategies=["buy_and_hold"])
    per = doc["strategies"]["buy_and_hold"]["per_regime"]
    blip, rest = per["blip"], per["rest"]
    assert blip["bars"] == 4 and rest["bars"] > 720
    assert all(blip[k] is None for k in ANNUALISED)
    assert blip["return"] != 0.0 and blip["max_drawdown"] is not None and blip["turnover"] is not None
    assert all(isinstance(rest[k], float) for k in ANNUALISED)
    assert json.loads(json.dumps(jsonsafe(doc)))["strategies"]["buy_and_hold"]["per_regime"]["blip"]["sharpe"] is None
    lines = table(per, "regime").splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(
        zip(
            head,
            (c.strip() for c in next(x for x in lines if x.startswith("| blip")).strip("|").split("|")),
            strict=True,
        )
    )
    assert row["CAGR"] == "—" and row["Sharpe"] == "—"
    assert row["return"] == f"{blip['return']:+.1%}" and row["bars"] == "4"
    other = next(x for x in lines if x.startswith("| rest"))
    assert "—" not in other.split("|")[head.index("CAGR") + 1]
