"""Cost-aware portfolio construction: an aim portfolio from the forecasts, and a trading rule that moves the
book toward it only as far as the expected gain pays for the trade.

References:
- Gârleanu & Pedersen (2013), *Dynamic trading with predictable returns and transaction costs*, J. Finance
  68(6): trade a fraction of the way toward an aim portfolio each period ("partial adjustment").
- Constantinides (1986); Davis & Norman (1990): with proportional costs the optimal policy is a no-trade
  region around the frictionless optimum; here its one-period form, solved in closed form with the
  square-root impact of ``strategies.costs`` added.
- Jegadeesh & Titman (1993): overlapping holding-period portfolios; here 24 hourly sub-books, each re-set
  once a day, so the book is rebalanced at the horizon the forecast is for yet changes smoothly.
- Markowitz (1952) per asset with the return forecast shrunk toward zero (a James–Stein-style guard: a
  forecast is believed only in part), sized so no asset exceeds its sleeve (no leverage).

Units. Each asset is a *sleeve* of 1/B of equity; ``x`` is the sleeve's weight in [lo, 1] (lo = 0 long
only, -1 long/short) and the asset's weight in the book is ``x / B``, as in ``strategies.positions``.
``mu`` is the forecast next-24h log return, ``var`` its variance (``learner.protocol.to_raw``); the rules
read them as the expected return and risk of holding for the forecast's horizon.

A :class:`Rule` is an aim and a way to trade toward it:

aim
- ``mv``: ``x* = clip(shrink * mu / (risk_aversion * var), lo, 1)``: mean-variance per sleeve. A sleeve
  whose shrunk forecast Sharpe is s runs at daily vol ``s / risk_aversion``.
- ``tanh``: ``tanh(10 mu / sigma) * min(1, 2% / sigma)``: ``signal_tanh``'s size (``strategies.positions``).

trade
- ``tranche``: 24 sub-books, sub-book h re-set to the aim at hour h UTC and left to drift for a day; the
  book is their average. Each bar moves 1/24 of the book: daily-horizon rebalancing without a daily spike.
- ``partial``: ``x <- x + rate * (x* - x)`` every bar (Gârleanu–Pedersen's partial adjustment).
- ``band``: the one-period mean-variance optimum net of costs, ``max_x x m - risk_aversion/2 x^2 var -
  cost(x - x0)`` with ``m = shrink * mu``: no trade unless the marginal expected gain ``|m - risk_aversion
  var x0|`` exceeds the linear cost rate; then a move that stops where the gain of one more unit equals its
  cost (the square-root impact makes that a quadratic in ``sqrt(|dx|)``, solved exactly).

State is explicit (:class:`Book`): the sleeves' weights as the account holds them (drifted with prices
since the last trade), the sub-books and the book's equity in units of the starting capital (which sizes
impact). ``Rule.step`` maps (book, what is known at bar t) to (new weights, new book): the backtest loops
it over a panel (:meth:`Rule.run`), the live service calls it once a bar (:meth:`Rule.step_panel`) and
checkpoints the book, so the signal feed and the backtest use the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import numpy as np

from strategies.costs import CostModel, liquid
from strategies.market import HOUR_MS, HOURS_PER_DAY, Market, returns_to
from strategies.sizing import CAP, DAILY_TARGET_VOL, GAIN

# Chosen on 2020-01 -> 2022-06 only (docs/backtest.md lists every setting tried and its result):
SHRINK = 0.1  # fraction of the return forecast believed: the slope of realised on forecast 24h returns there
RISK_AVERSION = 1.0  # Kelly on the shrunk forecast, each sleeve capped at its 1/B (no leverage)
PARTIAL_RATE = 1 / 168  # fraction of the gap to the aim traded each bar: half of it closed in about 5 days
HORIZON = 24  # bars the forecasts are for; sub-books of the tranche rule


@dataclass
class Book:
    """The rule's state: what the account holds, in sleeve units, and how big it is."""

    x: np.ndarray  # (B,) sleeve weights held now (asset weight = x / B), drifted since the last trade
    subs: np.ndarray  # (H, B) sub-book sleeve weights (tranche rule; zeros otherwise)
    equity: np.ndarray  # () book equity in units of the starting capital, before costs

    FIELDS: ClassVar[tuple[str, ...]] = ("x", "subs", "equity")

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: np.array(getattr(self, k), dtype=np.float64) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> Book:
        return cls(*(np.array(d[k], dtype=np.float64) for k in cls.FIELDS))


def drift(x: np.ndarray, moved: np.ndarray, n_assets: int) -> tuple[np.ndarray, np.ndarray]:
    """Sleeve weights ``x`` (..., B) after a bar that returned ``moved`` (B,), and the portfolio's return.

    As in the backtest: a book wiped out (1 + return <= 0) holds nothing afterwards.
    """
    g = (x @ moved) / n_assets
    den = np.asarray(1.0 + g)[..., None]
    alive = den > 1e-12
    return np.where(alive, x * (1.0 + moved) / np.where(alive, den, 1.0), 0.0), g


def mv_aim(mu: np.ndarray, var: np.ndarray, shrink: float, risk_aversion: float, lo: float) -> np.ndarray:
    """Mean-variance sleeve weight on the shrunk forecast, within [lo, 1]; NaN where a forecast is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        x = shrink * mu / (risk_aversion * var)
    return np.where(var > 0, np.clip(x, lo, CAP), np.nan)


def tanh_aim(mu: np.ndarray, var: np.ndarray, lo: float) -> np.ndarray:
    """``signal_tanh``'s sleeve weight, within [lo, 1]; NaN where a forecast is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(var)
        x = np.tanh(GAIN * mu / sd) * np.minimum(CAP, DAILY_TARGET_VOL / sd)
    return np.where(var > 0, np.clip(x, lo, CAP), np.nan)


def band_trade(
    x0: np.ndarray, m: np.ndarray, var: np.ndarray, risk_aversion: float, c: float, kappa: np.ndarray, lo: float
) -> np.ndarray:
    """The sleeve weight maximising ``x m - a/2 x^2 - |dx| (c + kappa sqrt|dx|)``, ``a = risk_aversion var``.

    ``c`` is the linear cost per unit traded, ``kappa sqrt|dx|`` the impact per unit. First-order condition
    for a buy (dx > 0): ``m - a (x0 + dx) - c - 1.5 kappa sqrt(dx) = 0``, a quadratic in ``sqrt(dx)``; a sell
    mirrors it. Neither happens while ``|m - a x0| <= c``: the no-trade region ``[(m - c) / a, (m + c) / a]``;
    ``kappa = 0`` moves to its edge exactly. A missing forecast (NaN ``m``) keeps ``x0``.
    """
    a = risk_aversion * var
    b = 1.5 * kappa
    with np.errstate(invalid="ignore", divide="ignore"):
        buy = m - c - a * x0  # marginal gain of the first unit bought, net of the linear cost
        sell = a * x0 - m - c
        gain = np.maximum(np.maximum(buy, sell), 0.0)
        root = (np.sqrt(b * b + 4.0 * a * gain) - b) / (2.0 * a)  # sqrt(|dx|)
        dx = np.where(buy > 0, root**2, np.where(sell > 0, -(root**2), 0.0))
    x = np.clip(x0 + dx, lo, CAP)
    return np.where(np.isfinite(x) & (a > 0), x, x0)


@dataclass(frozen=True)
class Rule:
    """An aim portfolio and a way to trade toward it, with the costs it weighs (see the module docstring)."""

    aim: Literal["mv", "tanh"] = "mv"
    trade: Literal["tranche", "partial", "band"] = "band"
    long_only: bool = False
    shrink: float = SHRINK  # mv: fraction of the return forecast believed
    risk_aversion: float = RISK_AVERSION  # mv, band: utility x m - risk_aversion/2 x^2 var per sleeve
    rate: float = PARTIAL_RATE  # partial: fraction of the gap to the aim traded per bar
    horizon: int = HORIZON  # tranche: number of sub-books (one re-set per bar, each once per horizon)
    costs: CostModel = field(default_factory=CostModel)

    @property
    def lo(self) -> float:
        return 0.0 if self.long_only else -CAP

    def init(self, n_assets: int) -> Book:
        """A flat book of ``n_assets`` sleeves worth the starting capital."""
        return Book(np.zeros(n_assets), np.zeros((self.horizon, n_assets)), np.asarray(1.0))

    def load(self, state: dict) -> Book:
        """The book saved as ``Book.as_dict()`` (a checkpoint)."""
        return Book.from_dict(state)

    def aim_of(self, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
        if self.aim == "mv":
            return mv_aim(mu, var, self.shrink, self.risk_aversion, self.lo)
        return tanh_aim(mu, var, self.lo)

    def step(
        self,
        book: Book,
        clock: int,
        mu: np.ndarray,
        var: np.ndarray,
        tradable: np.ndarray,
        moved: np.ndarray,
        adv: np.ndarray,
        sigma_daily: np.ndarray,
    ) -> tuple[np.ndarray, Book]:
        """One bar: let the book drift by ``moved`` (the bar that just closed), then decide.

        ``clock`` is the bar's absolute index on the hourly grid (open time // 1h): sub-book ``clock % H``
        is the one re-set. Arrays are (B,). Returns the new sleeve weights (the book after trading; NaN
        never) and the new book. Assets not ``tradable`` or without a forecast keep their holding.
        """
        _, x, book = self._advance(book, clock, mu, var, tradable, moved, adv, sigma_daily)
        return x, book

    def _advance(
        self,
        book: Book,
        clock: int,
        mu: np.ndarray,
        var: np.ndarray,
        tradable: np.ndarray,
        moved: np.ndarray,
        adv: np.ndarray,
        sigma_daily: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, Book]:
        """:meth:`step`, also returning the drifted weights before the trade: (x0, x, book)."""
        B = len(mu)
        x0, g = drift(book.x, moved, B)
        equity = float(book.equity) * (1.0 + float(g))
        subs = book.subs
        ok = tradable & np.isfinite(mu) & np.isfinite(var) & (var > 0)
        if self.costs.impact_k > 0:
            ok &= liquid(adv)  # the impact of a trade cannot be priced without liquidity: no trade
        if self.trade == "band":
            kappa = np.zeros(B)
            if self.costs.impact_k > 0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    kappa = self.costs.impact_k * sigma_daily * np.sqrt(equity * self.costs.capital / (B * adv))
            m = self.shrink * mu
            x = np.where(ok, band_trade(x0, m, var, self.risk_aversion, self.costs.rate, kappa, self.lo), x0)
        elif self.trade == "partial":
            x = np.where(ok, x0 + self.rate * (self.aim_of(mu, var) - x0), x0)
        else:  # tranche
            subs, _ = drift(book.subs, moved, B)
            k = clock % self.horizon
            subs[k] = np.where(ok, self.aim_of(mu, var), subs[k])
            x = np.where(ok, subs.mean(axis=0), x0)
        return x0, x, Book(x, subs, np.asarray(equity))

    def run(self, raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None):
        """Step over bars [start, T): (targets (T, B), asset weights (T, B)).

        Targets follow the backtest's convention (NaN = no order: keep the drifted holding; NaN before
        ``start``); weights are the book after each bar's decision (NaN before ``start``), what the signal
        feed publishes. ``market`` supplies costs, drift and liquidity (None: this rule's costs, no drift
        known, no impact priced).
        """
        T, B = tradable.shape
        rule = self if market is None else replace(self, costs=market.costs)
        market = market or Market(self.costs)
        clock = np.arange(T) if market.clock is None else market.clock
        targets = np.full((T, B), np.nan)
        weights = np.full((T, B), np.nan)
        book = rule.init(B)
        for t in range(start, T):
            moved, adv, sd = market.at(t, B)
            x0, x, book = rule._advance(book, int(clock[t]), raw[t, :, 1], raw[t, :, 2], tradable[t], moved, adv, sd)
            weights[t] = x / B
            targets[t] = np.where(x != x0, x / B, np.nan)
        return targets, weights

    def __call__(self, raw: np.ndarray, tradable: np.ndarray, start: int, market: Market | None = None) -> np.ndarray:
        """The ``strategies.positions`` signature: target weights (T, B), NaN = keep."""
        return self.run(raw, tradable, start, market)[0]

    def step_panel(self, book: Book, fp, s: int, raw_s: np.ndarray) -> tuple[np.ndarray, Book]:
        """:meth:`step` for bar ``s`` of a ``learner.features.FeaturePanel`` window (the live service's view).

        ``raw_s`` (B, 3) are the raw forecasts at bar s; where the panel's features are undefined they are
        ignored, as in the backtest. Returns asset weights (B,) and the new book.
        """
        B = len(fp.symbols)
        raw_s = np.where(fp.mask[s][:, None], raw_s, np.nan)
        moved = returns_to(fp.close[: s + 1])[s]
        adv = np.full(B, np.nan) if fp.adv is None else fp.adv[s]
        sd = fp.sigma[s] * np.sqrt(HOURS_PER_DAY)
        clock = int(fp.times[s] // HOUR_MS)
        x, book = self.step(book, clock, raw_s[:, 1], raw_s[:, 2], np.isfinite(fp.close[s]), moved, adv, sd)
        return x / B, book
