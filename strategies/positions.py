"""Target positions from forecasts: pure functions of what is known when bar t closes.

Every function here maps forecasts made at bar t (after its close) to target weights for bar t, as
fractions of portfolio equity per asset (negative = short). The backtest holds those weights from close
t to close t+1, so a position never earns the return of the bar it was decided on. None of these
functions receives realised targets or prices: look-ahead is ruled out by their signatures, and
``tests/strategies`` checks it by perturbing the future.

Conventions for the (T, B) arrays returned:
- a finite value is a target to trade to at close t;
- ``NaN`` means "no order": keep the current (drifted) holding. Buy-and-hold uses it after entry, and
  every strategy returns it where the forecast is missing (a bar whose features were undefined): a desk
  whose model is silent for an hour keeps its book rather than liquidating it. Before the first forecast
  the book is empty, so "keep" means flat.

Inputs are raw forecasts from :func:`learner.protocol.to_raw`: ``raw[..., 1]`` the expected
next-24h log return, ``raw[..., 2]`` the forecast next-24h variance.

Sizing follows volatility targeting (Moskowitz, Ooi & Pedersen 2012; Harvey et al. 2018): each asset
gets ``min(cap, target_vol / forecast_vol) / B``, so the portfolio never exceeds gross exposure ``cap``
and a calm asset is not drowned by a volatile one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DAILY_TARGET_VOL = 0.02  # per-asset daily vol the sizing aims at (about 38% a year)
CAP = 1.0  # most weight any one asset may get before dividing by B (no leverage)
GAIN = 10.0  # tanh gain on the forecast 24h Sharpe (mu / sigma); typical |mu/sigma| is 0.01..0.2


def vol_scale(var_24h: np.ndarray, n_assets: int, target: float = DAILY_TARGET_VOL, cap: float = CAP) -> np.ndarray:
    """Per-asset weight that targets ``target`` daily vol, capped, split over ``n_assets``; NaN where unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.minimum(cap, target / np.sqrt(var_24h))
    return np.where(np.isfinite(var_24h) & (var_24h > 0), w, np.nan) / n_assets


def buy_and_hold(raw: np.ndarray, tradable: np.ndarray, start: int) -> np.ndarray:
    """Equal-weight buy-and-hold: at bar ``start`` buy 1/n of each asset tradable then; never trade again.

    ``raw`` is ignored (the benchmark needs no forecast) but kept so every strategy has one signature.
    Assets not tradable at ``start`` (not listed yet, or a gap on that bar) are never bought.
    """
    T, B = tradable.shape
    w = np.full((T, B), np.nan)
    on = tradable[start]
    w[start] = np.where(on, 1.0 / max(int(on.sum()), 1), 0.0)
    return w


def vol_target_long(raw: np.ndarray, tradable: np.ndarray, start: int) -> np.ndarray:
    """Long-only, sized by the variance forecast alone: a volatility-managed portfolio (no direction)."""
    w = vol_scale(raw[..., 2], raw.shape[1])
    w[:start] = np.nan
    return w


def signal_tanh(raw: np.ndarray, tradable: np.ndarray, start: int, gain: float = GAIN) -> np.ndarray:
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


def signal_sign(raw: np.ndarray, tradable: np.ndarray, start: int) -> np.ndarray:
    """Long/short: sign of the expected 24h return times the volatility-targeted size (all-in conviction)."""
    w = np.sign(raw[..., 1]) * vol_scale(raw[..., 2], raw.shape[1])  # NaN where either forecast is missing
    w[:start] = np.nan
    return w


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    description: str


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("buy_and_hold", buy_and_hold, "equal weight at the first bar, never rebalanced (benchmark)"),
        Strategy("vol_target_long", vol_target_long, "long only, min(1, 2%/forecast daily vol)/B per asset"),
        Strategy("signal_tanh", signal_tanh, "long/short tanh(10 mu24/sigma24) x vol-targeted size"),
        Strategy("signal_sign", signal_sign, "long/short sign(mu24) x vol-targeted size"),
    )
}
