"""Performance measures of a backtest, in total and per market regime.

All inputs are per decision bar t (hourly): ``net[t]`` the return of equity from close t to close t+1
after the cost of the trade at close t, ``exposure[t]`` the gross weight held over that bar,
``turnover[t]`` the traded notional at close t as a fraction of equity, ``cost[t]`` what fees and
slippage took (fraction of equity).

- ``return``: compounded total return, prod(1 + net) - 1 (``gross_return``: the same before costs).
- ``cagr``: compound annual growth rate, (1 + return)^(1 / years) - 1, years = bars / (24 * 365).
- ``sharpe``: mean(net) / std(net) * sqrt(24 * 365), no risk-free rate (crypto trades around the clock,
  so every hour counts; flat hours count too, as they would in an account).
- ``sortino``: mean(net) / downside deviation * sqrt(24 * 365); downside deviation sqrt(mean(min(net, 0)^2))
  over all bars (target 0; Sortino & Price 1994, as quantstats and backtesting.py compute it).
- ``calmar``: cagr / max_drawdown (Young 1991; over the whole stretch, not the customary trailing 3 years).
- ``max_drawdown``: largest peak-to-trough loss of equity as a positive fraction (0.3 = -30%).
- ``hit_rate``: share of bars spent in the market (exposure > 0) whose net return was positive.
- ``turnover``: average traded notional per day as a fraction of equity (one-way; 2.0 = the whole book
  turned over once a day, out and in). ``costs``: sum of what fees and slippage took, fraction of equity.
- ``skew``, ``kurtosis``: of the hourly net returns (kurtosis in excess of a normal's 3).
- ``psr``: probabilistic Sharpe ratio, P(true Sharpe > 0) (:mod:`strategies.overfitting`).
- ``sharpe_ci``: [low, high] 95% stationary-bootstrap interval of ``sharpe`` (mean block one week, seeded).
- ``dsr``: deflated Sharpe ratio; it needs every strategy tried, so :func:`deflate` fills it in afterwards.

Annualised figures (``ANNUALISED``) and the inference on the Sharpe ratio (``INFERENCE``) are None for a
stretch shorter than ``MIN_ANNUALISE_BARS`` (30 days): a few hours compounded to a year say nothing (a
4-bar regime would read as a 1.7e13 annual return), and skew and kurtosis from a few hours cannot support a
probability. Totals over the stretch (return, drawdown, turnover, ...) stay.
"""

from __future__ import annotations

import math

import numpy as np

from learner.evaluation.regimes import Regime
from strategies import overfitting as OF

BARS_PER_YEAR = 24 * 365
MIN_ANNUALISE_BARS = 24 * 30  # 30 days of hourly bars: below this, no annualised figure
ANNUALISED = ("cagr", "sharpe", "sortino", "calmar", "annual_vol")
INFERENCE = ("psr", "dsr", "sharpe_ci")  # None under 30 days as well
KEYS = ("return", "sharpe", "max_drawdown", "hit_rate", "turnover")
ALL = (
    "return", "gross_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "hit_rate", "turnover",
    "annual_vol", "exposure", "costs", "bars", "skew", "kurtosis", "psr", "dsr", "sharpe_ci",
)  # fmt: skip


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough loss of an equity curve, as a positive fraction."""
    if equity.size == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def summarise(
    net: np.ndarray, exposure: np.ndarray, turnover: np.ndarray, cost: np.ndarray, gross: np.ndarray | None = None
) -> dict:
    """Every measure for one stretch of bars (keys ``ALL``). The equity curve is rebased to 1 at its first bar.

    The annualised measures and the inference (``ANNUALISED``, ``INFERENCE``) are None when the stretch has
    fewer than ``MIN_ANNUALISE_BARS``; ``dsr`` is None until :func:`deflate` has seen every strategy.

    ``gross`` (returns before costs) adds ``gross_return``: whether a signal has an edge that costs eat.
    """
    n = int(net.size)
    out: dict = dict.fromkeys(ALL)
    if n == 0:
        return out
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])
    sd = float(net.std(ddof=1)) if n > 1 else 0.0
    inm = exposure > 0
    dd = max_drawdown(equity)
    sr, skew, kurt = OF.sharpe_moments(net)
    out |= {
        "return": float(equity[-1] - 1.0),
        "gross_return": float(np.prod(1.0 + gross) - 1.0) if gross is not None else None,
        "max_drawdown": dd,
        "hit_rate": float((net[inm] > 0).mean()) if inm.any() else None,
        "turnover": float(turnover.sum() / (n / 24.0)),
        "exposure": float(exposure.mean()),
        "costs": float(cost.sum()),
        "bars": n,
        "skew": skew,
        "kurtosis": kurt,
    }
    if n < MIN_ANNUALISE_BARS:
        return out
    years = n / BARS_PER_YEAR
    cagr = float(equity[-1] ** (1.0 / years) - 1.0) if equity[-1] > 0 else -1.0
    downside = math.sqrt(float(np.mean(np.minimum(net, 0.0) ** 2)))
    out |= {
        "cagr": cagr,
        "sharpe": sr * math.sqrt(BARS_PER_YEAR) if sr is not None else None,
        "sortino": float(net.mean() / downside * math.sqrt(BARS_PER_YEAR)) if downside > 0 else None,
        "calmar": cagr / dd if dd > 0 else None,
        "annual_vol": sd * math.sqrt(BARS_PER_YEAR),
    }
    if sr is not None:
        out["psr"] = OF.probabilistic_sharpe_ratio(sr, n, skew, kurt)
        ci = OF.sharpe_interval(net)
        out["sharpe_ci"] = [v * math.sqrt(BARS_PER_YEAR) for v in ci] if ci is not None else None
    return out


def deflate(strategies: dict[str, dict], declared: int | None = None, declared_std: float | None = None) -> dict:
    """Fill in ``dsr`` in the total and every regime of each strategy; return the ``trials`` block.

    ``strategies`` is ``backtest.json``'s ``{name: {"total": {...}, "per_regime": {regime: {...}}}}``. The
    number of trials N is every strategy here, or ``declared`` if the user says more were tried (other
    models, parameters, fees, earlier runs): a total can only be larger than what one run shows. The variance
    of the trials' Sharpe ratios is measured across the strategies here, stretch by stretch; with a single
    strategy it falls back to the sampling variance of a Sharpe estimate, 1 / (bars - 1), what skill-less
    trials would scatter by. ``declared_std`` (annualised, like ``sharpe``) replaces that measured spread
    with the standard deviation of the Sharpe ratios of *every* variant tried (Bailey & López de Prado's V is
    the variance across the trials of the search, not across the unrelated strategies one report shows).
    Deflating needs only the JSON figures, so a reader can redo it with another N.
    """
    in_run = len(strategies)
    n_trials = max(in_run, declared or 0)
    scale = math.sqrt(BARS_PER_YEAR)

    def one(stretches: list[dict]) -> dict:
        srs = [s["sharpe"] / scale for s in stretches if s.get("sharpe") is not None]
        bars = max((s.get("bars") or 0 for s in stretches), default=0)
        if declared_std is not None:
            var, source = (declared_std / scale) ** 2, "declared: the Sharpe ratios of every variant tried"
        elif len(srs) >= 2:
            var, source = float(np.var(srs, ddof=1)), "the Sharpe ratios of the strategies in this run"
        else:
            var, source = (1.0 / (bars - 1) if bars > 1 else 0.0), "sampling noise of one Sharpe estimate"
        sr0 = OF.expected_max_sharpe(n_trials, var)
        for s in stretches:
            if s.get("sharpe") is not None and s.get("skew") is not None:
                s["dsr"] = OF.deflated_sharpe_ratio(
                    s["sharpe"] / scale, s["bars"], s["skew"], s["kurtosis"], n_trials, var
                )
        return {"sharpe_std": math.sqrt(var) * scale, "expected_max_sharpe": sr0 * scale, "variance_from": source}

    regimes = list(dict.fromkeys(r for v in strategies.values() for r in v.get("per_regime", {})))
    return {
        "n": n_trials,
        "in_run": in_run,
        "declared": declared,
        "declared_sharpe_std": declared_std,
        "total": one([v["total"] for v in strategies.values()]),
        "per_regime": {
            r: one([v["per_regime"][r] for v in strategies.values() if r in v.get("per_regime", {})]) for r in regimes
        },
        "rule": "dsr = P(true Sharpe > expected_max_sharpe), the Sharpe the best of n skill-less trials shows by "
        "luck (Bailey & Lopez de Prado 2014); n = max(--trials, strategies in this run); sharpe_std and "
        "expected_max_sharpe annualised like sharpe",
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
