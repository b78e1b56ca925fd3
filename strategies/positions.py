"""Target positions from forecasts: pure functions of what is known when bar t closes.

Every function here maps forecasts made at bar t (after its close) to target weights for bar t, as
fractions of portfolio equity per asset (negative = short). The backtest holds those weights from close
t to close t+1, so a position never earns the return of the bar it was decided on. None of these
functions receives realised targets or prices: look-ahead is ruled out by their signatures, and
``tests/strategies`` checks it by perturbing the future.

Every strategy is ``fn(raw, tradable, start, market=None) -> (T, B)``; ``market``
(``strategies.market.Market``: costs, liquidity, the return of the bar just closed, all known at t) is
what the cost-aware rules of ``strategies.portfolio`` weigh; the rules defined here ignore it.

Conventions for the (T, B) arrays returned:
- a finite value is a target to trade to at close t;
- ``NaN`` means "no order": keep the current (drifted) holding. Buy-and-hold uses it after entry, and
  every strategy returns it where the forecast is missing (a bar whose features were undefined): a desk
  whose model is silent for an hour keeps its book rather than liquidating it. Before the first forecast
  the book is empty, so "keep" means flat.

Inputs are raw forecasts from :func:`learner.protocol.to_raw`: ``raw[..., 1]`` the expected
next-24h log return, ``raw[..., 2]`` the forecast next-24h variance.

The cost-aware rules registered here (``tranche_tanh``, ``mv_band``, ``mv_partial`` and their long-only
twins) live in ``strategies.portfolio``; ``feed_rule`` names the one the signal feed publishes.

Sizing follows volatility targeting (Moskowitz, Ooi & Pedersen 2012; Harvey et al. 2018): each asset
gets ``min(cap, target_vol / forecast_vol) / B``, so the portfolio never exceeds gross exposure ``cap``
and a calm asset is not drowned by a volatile one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from strategies.costs import CostModel
from strategies.market import Market, market_from
from strategies.portfolio import PARTIAL_RATE, SHRINK, Rule
from strategies.sizing import CAP, DAILY_TARGET_VOL, GAIN, vol_scale

__all__ = [
    "CAP",
    "DAILY_TARGET_VOL",
    "FEED_STRATEGY",
    "GAIN",
    "STRATEGIES",
    "Strategy",
    "feed_rule",
    "feed_weights",
    "vol_scale",
]


def buy_and_hold(raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None) -> np.ndarray:
    """Equal-weight buy-and-hold: at bar ``start`` buy 1/n of each asset tradable then; never trade again.

    ``raw`` is ignored (the benchmark needs no forecast) but kept so every strategy has one signature.
    Assets not tradable at ``start`` (not listed yet, or a gap on that bar) are never bought.
    """
    T, B = tradable.shape
    w = np.full((T, B), np.nan)
    on = tradable[start]
    w[start] = np.where(on, 1.0 / max(int(on.sum()), 1), 0.0)
    return w


def vol_target_long(raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None) -> np.ndarray:
    """Long-only, sized by the variance forecast alone: a volatility-managed portfolio (no direction)."""
    w = vol_scale(raw[..., 2], raw.shape[1])
    w[:start] = np.nan
    return w


def signal_tanh(
    raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None, gain: float = GAIN
) -> np.ndarray:
    """Long/short: tanh(gain * mu_24h / sigma_24h) times the volatility-targeted size.

    The forecast Sharpe of the next day sets direction and conviction; tanh keeps the weight bounded and
    changes it smoothly, so small forecast updates do not flip the whole book (lower turnover than sign).
    """
    mu, var = raw[..., 1], raw[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.tanh(gain * mu / np.sqrt(var))
    w = score * vol_scale(var, raw.shape[1])  # NaN (keep holding) where either forecast is missing
    w[:start] = np.nan
    return w


def signal_sign(raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None) -> np.ndarray:
    """Long/short: sign of the expected 24h return times the volatility-targeted size (all-in conviction)."""
    w = np.sign(raw[..., 1]) * vol_scale(raw[..., 2], raw.shape[1])  # NaN where either forecast is missing
    w[:start] = np.nan
    return w


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable[..., np.ndarray]  # (raw, tradable, start, market=None) -> (T, B) target weights, NaN = keep
    description: str
    cost_aware: bool = False  # a rule of strategies.portfolio: it decides its own trades (at the horizon, in a
    # no-trade region or at a rate), so the backtest's --rebalance-band is not applied to it


# The cost-aware rules (strategies.portfolio): an aim portfolio and a way of trading toward it
TRANCHE_TANH = Rule("tanh", "tranche")
MV_BAND = Rule("mv", "band")
MV_BAND_LONG = Rule("mv", "band", long_only=True)
MV_PARTIAL = Rule("mv", "partial")
MV_PARTIAL_LONG = Rule("mv", "partial", long_only=True)

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("buy_and_hold", buy_and_hold, "equal weight at the first bar, never rebalanced (benchmark)"),
        Strategy("vol_target_long", vol_target_long, "long only, min(1, 2%/forecast daily vol)/B per asset"),
        Strategy("signal_tanh", signal_tanh, "long/short tanh(10 mu24/sigma24) x vol-targeted size"),
        Strategy("signal_sign", signal_sign, "long/short sign(mu24) x vol-targeted size"),
        Strategy(
            "tranche_tanh", TRANCHE_TANH, "signal_tanh's size in 24 hourly sub-books, each re-set once a day", True
        ),
        Strategy(
            "mv_band",
            MV_BAND,
            f"long/short mean-variance on {SHRINK:g} x mu24; no trade unless the expected gain beats the cost",
            True,
        ),
        Strategy("mv_band_long", MV_BAND_LONG, "mv_band, long only", True),
        Strategy(
            "mv_partial",
            MV_PARTIAL,
            f"long/short: trade 1/{1 / PARTIAL_RATE:.0f} of the gap to the mean-variance aim each hour "
            "(Garleanu-Pedersen); the signal feed's rule",
            True,
        ),
        Strategy("mv_partial_long", MV_PARTIAL_LONG, "mv_partial, long only", True),
    )
}

FEED_STRATEGY = "mv_partial"  # the one rule whose weights the signal feed publishes (docs/signals.md)


def feed_rule(costs: CostModel | None = None) -> Rule:
    """The signal feed's position rule, weighing ``costs`` (default: 10 + 2 bps, no impact).

    The live service steps it bar by bar (``learner.service``, injected by ``continuum learn``); replays
    (``continuum demo``, ``continuum backtest``) run it over the panel with :func:`feed_weights`.
    """
    rule = STRATEGIES[FEED_STRATEGY].fn
    return rule if costs is None else replace(rule, costs=costs)


def feed_weights(fp, preds: np.ndarray, costs: CostModel | None = None) -> np.ndarray:
    """(T, B) the feed rule's target weights over a ``FeaturePanel`` for forecasts ``preds`` (T, B, 3, volatility
    units): what the signals of a replay carry. NaN before the first forecast."""
    from learner.protocol import to_raw

    rule = feed_rule(costs)
    preds = np.where(fp.mask[..., None], preds, np.nan)
    has = np.isfinite(preds).all(-1).any(-1)
    if not has.any():
        return np.full(fp.mask.shape, np.nan)
    return rule.run(to_raw(preds, fp.sigma), np.isfinite(fp.close), int(np.argmax(has)), market_from(fp, rule.costs))[1]
