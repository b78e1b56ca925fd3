"""What the book knows at bar t besides the forecasts: prices moved so far, liquidity, volatility, costs.

Everything in a :class:`Market` row t is known when bar t closes: the return of the bar that just closed
(so a rule can let its weights drift exactly as the account's do), the average daily traded value over the
30 days to t and the causal daily volatility (which size the square-root impact of ``strategies.costs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategies.costs import CostModel

HOURS_PER_DAY = 24
HOUR_MS = 3_600_000


def bar_returns(close: np.ndarray) -> np.ndarray:
    """(T, B) simple return booked on bar t: close[t+1] / (last close at or before t) - 1; 0 if unknown.

    The last row is 0 (no next close). Across a gap the whole move lands on the bar before the price
    reappears, which is when an account would see it.
    """
    T, B = close.shape
    present = np.isfinite(close)
    if present.all():  # no gap: the last close at or before t is close t (the same numbers, without the search)
        mark = close
    else:
        idx = np.where(present, np.arange(T)[:, None], -1)
        last = np.maximum.accumulate(idx, axis=0)  # (T, B) index of the last present close at or before t
        mark = np.where(last >= 0, close[np.maximum(last, 0), np.arange(B)], np.nan)
    r = np.zeros((T, B))
    with np.errstate(invalid="ignore", divide="ignore"):
        nxt = close[1:] / mark[:-1] - 1.0
    r[:-1] = np.where(np.isfinite(nxt), nxt, 0.0)
    return r


def returns_to(close: np.ndarray) -> np.ndarray:
    """(T, B) the return booked on the bar that ends at close t (``bar_returns`` one bar later); row 0 is 0.

    Known at close t: it is what a held position earned since the last decision.
    """
    r = np.zeros(close.shape)
    r[1:] = bar_returns(close)[:-1]
    return r


@dataclass(frozen=True)
class Market:
    """Per bar (T, B), known at its close: the return just booked, liquidity, daily volatility; and the costs."""

    costs: CostModel
    moved: np.ndarray | None = None  # (T, B) return over the bar ending at close t (0 where unknown)
    adv: np.ndarray | None = None  # (T, B) average daily traded value, quote currency
    sigma_daily: np.ndarray | None = None  # (T, B) daily volatility
    clock: np.ndarray | None = None  # (T,) bar index on the absolute hourly grid (open time // 1h)

    def at(self, t: int, n_assets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(moved, adv, sigma_daily) at bar t; zeros / NaN where not given."""
        nan = np.full(n_assets, np.nan)
        moved = np.zeros(n_assets) if self.moved is None else self.moved[t]
        adv = nan if self.adv is None else self.adv[t]
        sd = nan if self.sigma_daily is None else self.sigma_daily[t]
        return moved, adv, sd


def market_from(fp, costs: CostModel) -> Market:
    """The :class:`Market` of a ``learner.features.FeaturePanel``: its closes, ADV and causal daily volatility."""
    sigma_daily = fp.sigma * np.sqrt(HOURS_PER_DAY)
    return Market(costs, returns_to(fp.close), fp.adv, sigma_daily, np.asarray(fp.times) // HOUR_MS)
