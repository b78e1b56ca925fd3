"""Performance measures of a backtest, in total and per market regime.

All inputs are per decision bar t (hourly): ``net[t]`` the return of equity from close t to close t+1
after the cost of the trade at close t, ``exposure[t]`` the gross weight held over that bar,
``turnover[t]`` the traded notional at close t as a fraction of equity, ``cost[t]`` what fees and
slippage took (fraction of equity).

- ``return``: compounded total return, prod(1 + net) - 1 (``gross_return``: the same before costs).
- ``sharpe``: mean(net) / std(net) * sqrt(24 * 365), no risk-free rate (crypto trades around the clock,
  so every hour counts; flat hours count too, as they would in an account).
- ``max_drawdown``: largest peak-to-trough loss of equity as a positive fraction (0.3 = -30%).
- ``hit_rate``: share of bars spent in the market (exposure > 0) whose net return was positive.
- ``turnover``: average traded notional per day as a fraction of equity (one-way; 2.0 = the whole book
  turned over once a day, out and in).

Annualised figures (``ANNUALISED``: ``sharpe``, ``annual_return``, ``annual_vol``) are None for a stretch
shorter than ``MIN_ANNUALISE_BARS`` (30 days): a few hours compounded to a year say nothing (a 4-bar regime
would read as a 1.7e13 annual return). Totals over the stretch (return, drawdown, turnover, ...) stay.
"""

from __future__ import annotations

import math

import numpy as np

from learner.evaluation.regimes import Regime

BARS_PER_YEAR = 24 * 365
MIN_ANNUALISE_BARS = 24 * 30  # 30 days of hourly bars: below this, no annualised figure
ANNUALISED = ("sharpe", "annual_return", "annual_vol")
KEYS = ("return", "sharpe", "max_drawdown", "hit_rate", "turnover")


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough loss of an equity curve, as a positive fraction."""
    if equity.size == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def summarise(
    net: np.ndarray, exposure: np.ndarray, turnover: np.ndarray, cost: np.ndarray, gross: np.ndarray | None = None
) -> dict:
    """Every measure for one stretch of bars. The equity curve is rebased to 1 at its first bar.

    The annualised measures (``ANNUALISED``) are None when the stretch has fewer than ``MIN_ANNUALISE_BARS``.

    ``gross`` (returns before costs) adds ``gross_return``: whether a signal has an edge that costs eat.
    """
    n = int(net.size)
    if n == 0:
        return {k: None for k in (*KEYS, "gross_return", "annual_return", "annual_vol", "exposure", "costs", "bars")}
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])
    total = float(equity[-1] - 1.0)
    sd = float(net.std(ddof=1)) if n > 1 else 0.0
    inm = exposure > 0
    hit = float((net[inm] > 0).mean()) if inm.any() else None
    sharpe = ann = vol = None
    if n >= MIN_ANNUALISE_BARS:
        sharpe = float(net.mean() / sd * math.sqrt(BARS_PER_YEAR)) if sd > 0 else None
        years = n / BARS_PER_YEAR
        ann = float(equity[-1] ** (1.0 / years) - 1.0) if equity[-1] > 0 else -1.0
        vol = sd * math.sqrt(BARS_PER_YEAR)
    return {
        "return": total,
        "gross_return": float(np.prod(1.0 + gross) - 1.0) if gross is not None else None,
        "sharpe": sharpe,
        "max_drawdown": max_drawdown(equity),
        "hit_rate": hit,
        "turnover": float(turnover.sum() / (n / 24.0)),
        "annual_return": ann,
        "annual_vol": vol,
        "exposure": float(exposure.mean()),
        "costs": float(cost.sum()),
        "bars": n,
    }


def regime_rows(times: np.ndarray, regimes: tuple[Regime, ...]) -> dict[str, np.ndarray]:
    """Boolean row masks of the decision bars (open times in ms) that fall in each regime."""
    out = {}
    for r in regimes:
        a, b = int(r.start.timestamp() * 1000), int(r.end.timestamp() * 1000)
        rows = (times >= a) & (times < b)
        if rows.any():
            out[r.name] = rows
    return out


def per_regime(
    times: np.ndarray,
    net: np.ndarray,
    exposure: np.ndarray,
    turnover: np.ndarray,
    cost: np.ndarray,
    regimes: tuple[Regime, ...],
    gross: np.ndarray | None = None,
) -> dict[str, dict]:
    """:func:`summarise` on the bars of each regime that the backtest covers (regimes it misses are left out)."""
    return {
        name: summarise(net[rows], exposure[rows], turnover[rows], cost[rows], None if gross is None else gross[rows])
        for name, rows in regime_rows(times, regimes).items()
    }
