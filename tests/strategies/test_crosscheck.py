"""Our numbers recomputed by a library users trust: quantstats, on returns rebuilt independently with pandas.

Two steps, so that both the engine and the metrics are checked:

1. The account is replayed in pandas the way a broker statement reads, in shares and cash rather than
   weights: at each close the book is marked at the last known prices, the target weights are bought with
   the equity left after paying ``turnover x rate``, and held to the next close. The hourly returns of that
   account must equal ``run_backtest``'s net returns.
2. quantstats (``rf=0``, ``periods=24*365``, like our Sharpe) computes total return, Sharpe, max drawdown,
   Sortino, CAGR, Calmar and the probabilistic Sharpe ratio from those returns; they must equal
   :func:`strategies.metrics.summarise`'s.

Buy-and-hold (no trade after the first bar: pure drift) and signal_tanh (long/short, re-sized every hour
through the rebalance band, costs every bar), on real 2019 prices with gaps cut into them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import quantstats as qs

from strategies.backtest import run_backtest
from strategies.metrics import BARS_PER_YEAR, summarise
from strategies.positions import STRATEGIES

FEE_BPS, SLIP_BPS, BAND, START = 10.0, 2.0, 0.02, 48


def _inputs(fp) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Prices with gaps, and the target weights of the two strategies from causal forecasts."""
    close = fp.close.copy()
    close[1000:1004, 1] = np.nan  # a 4-hour gap in ETH
    close[2000, 0] = np.nan  # and an hour of BTC
    logp = np.log(fp.close)
    raw = np.full((*close.shape, 3), np.nan)
    raw[24:, :, 1] = logp[24:] - logp[:-24]  # momentum: the last day's log return as the next day's forecast
    raw[..., 2] = 24 * fp.sigma**2  # the causal EWMA variance, scaled to a day
    tradable = np.isfinite(close)
    return close, {name: STRATEGIES[name].fn(raw, tradable, START) for name in ("buy_and_hold", "signal_tanh")}


def _account(close: np.ndarray, target: np.ndarray, rate: float, band: float) -> np.ndarray:
    """Hourly returns of an account holding shares and cash (pandas), from ``START`` to the last close."""
    px = pd.DataFrame(close).ffill()  # marks at the last close seen (a gap keeps the old mark)
    quoted = pd.DataFrame(close).notna()  # a bar with no price has no trade in that asset
    shares = np.zeros(close.shape[1])
    cash = 1.0
    out = []
    for t in range(START, len(close) - 1):
        p = px.iloc[t].fillna(0.0).to_numpy()
        equity = cash + shares @ p
        held = shares * p / equity
        want = pd.Series(target[t])
        trade = quoted.iloc[t].to_numpy() & want.notna().to_numpy() & (np.abs(want.fillna(0).to_numpy() - held) > band)
        w = np.where(trade, want.fillna(0).to_numpy(), held)
        after = equity * (1.0 - rate * np.abs(w - held).sum())  # the fee leaves the account at the trade
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(p > 0, w * after / p, 0.0)
        cash = after - shares @ p
        out.append((cash + shares @ px.iloc[t + 1].fillna(0.0).to_numpy()) / equity - 1.0)
    return np.array(out)


@pytest.mark.parametrize("name", ["buy_and_hold", "signal_tanh"])
def test_quantstats_agrees_on_returns_sharpe_and_drawdown(fp, name):
    close, targets = _inputs(fp)
    rate = (FEE_BPS + SLIP_BPS) / 1e4
    res = run_backtest(fp.times, close, targets[name], START, fee_bps=FEE_BPS, slippage_bps=SLIP_BPS, band=BAND)
    account = _account(close, targets[name], rate, BAND)
    np.testing.assert_allclose(res.net, account, rtol=0, atol=1e-12)  # step 1: the engine
    if name == "signal_tanh":
        assert res.turnover.sum() > 20 and (res.exposure < 1.0).all()  # it did trade, long and short

    ours = summarise(res.net, res.exposure, res.turnover, res.cost)
    r = pd.Series(account, index=pd.to_datetime(res.times, unit="ms", utc=True).tz_localize(None), name=name)
    theirs = {
        "return": qs.stats.comp(r),
        "sharpe": qs.stats.sharpe(r, rf=0.0, periods=BARS_PER_YEAR, annualize=True),
        "max_drawdown": -qs.stats.max_drawdown(r),
        "sortino": qs.stats.sortino(r, rf=0.0, periods=BARS_PER_YEAR, annualize=True),
        "cagr": qs.stats.cagr(r, rf=0.0, periods=BARS_PER_YEAR),
        "calmar": qs.stats.calmar(r, periods=BARS_PER_YEAR),
    }
    for k, v in theirs.items():  # step 2: the metrics, same formulas on the same returns
        assert ours[k] == pytest.approx(float(v), rel=1e-9, abs=1e-12), k
    # PSR: quantstats corrects skew and kurtosis for sample size (pandas), we use plain moments (the paper's)
    assert ours["psr"] == pytest.approx(float(qs.stats.probabilistic_sharpe_ratio(r, periods=BARS_PER_YEAR)), abs=1e-4)
