"""A bar-level portfolio backtest over (T, B) with costs, gaps and drift, and the one call the demo uses.

Timeline of one decision bar t (hourly; times are bar open times, as in the lake):

1. Bar t closes. The forecast made after that close decides the target weights (``strategies.positions``).
2. The book trades from its pre-trade weights (last bar's weights drifted by last bar's returns) to the
   target, at the close price of bar t. Costs are ``(fee_bps + slippage_bps) / 1e4`` per unit of traded
   notional, taken from equity at once: equity is multiplied by ``1 - turnover * rate``. With a square-root
   impact term (``impact_k > 0``, ``strategies.costs``) each asset's trade ``dw`` also pays
   ``impact_k * sigma_daily * sqrt(|dw| * equity * capital / ADV)`` per unit: the book is a notional
   ``capital`` that grows with its equity, and an asset without known liquidity (ADV) is not traded.
3. The weights are held to the close of bar t+1 and earn ``close[t+1] / close[t] - 1`` per asset.

So ``net[t] = (1 - cost[t]) * (1 + gross[t]) - 1``: a position never earns the return of the bar it was
decided on, and without impact the cost of every trade is exactly turnover x rate of equity.

Gaps (a missing bar for an asset): nothing can be traded in that asset on that bar (its target is
ignored and the holding is kept); its price is marked at the last close seen, and the return across
the gap is booked on the bar where the next close appears. Nothing is forward-filled into forecasts.
A rebalance band skips trades smaller than ``band`` (fraction of equity) per asset, as a desk would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from learner.evaluation.regimes import Regime
from learner.features import FeaturePanel
from learner.protocol import to_raw
from strategies import metrics as M
from strategies import overfitting as OF
from strategies.costs import CostModel, liquid
from strategies.market import bar_returns, market_from
from strategies.positions import STRATEGIES

# Per-asset trades smaller than this weight are skipped. Hourly re-sizing to a volatility forecast otherwise
# turns the book over daily for noise: on the bundled 2019-24 history (river_linear forecasts, 12 bps) a
# 0.02 band cut vol_target_long's costs from 162% to 47% of equity at nearly the same exposure.
DEFAULT_BAND = 0.02
WIPED_OUT = 1e-12  # 1 + a bar's return at or below this: the book is gone and holds nothing afterwards
# With a band, drift_book steps through every bar with orders at 1.1-1.3x step_book's cost per bar (it re-derives
# the drift from the last bar with orders); above this share of such bars step_book's plain loop is faster.
STEP_SHARE = 0.5


@dataclass
class BacktestResult:
    """Per decision bar t in [start, end - 1): what was held and what it earned."""

    times: np.ndarray  # (n,) int64 ms: open time of decision bar t
    mark_times: np.ndarray  # (n + 1,) int64 ms: bar at whose close equity is marked (first = start, before trading)
    weights: np.ndarray  # (n, B) weights held over (close t, close t+1]
    turnover: np.ndarray  # (n,) traded notional at close t / equity
    cost: np.ndarray  # (n,) fraction of equity paid in fees + slippage at close t
    gross: np.ndarray  # (n,) portfolio return over (close t, close t+1] before costs
    net: np.ndarray  # (n,) (1 - cost) (1 + gross) - 1
    equity: np.ndarray  # (n + 1,) starts at 1

    @property
    def exposure(self) -> np.ndarray:
        return np.abs(self.weights).sum(axis=1)


def run_backtest(
    times: np.ndarray,
    close: np.ndarray,
    target: np.ndarray,
    start: int,
    end: int | None = None,
    fee_bps: float = 10.0,
    slippage_bps: float = 2.0,
    band: float = 0.0,
    impact_k: float = 0.0,
    capital: float = 1_000_000.0,
    adv: np.ndarray | None = None,
    sigma_daily: np.ndarray | None = None,
) -> BacktestResult:
    """Trade ``target`` (T, B; NaN = keep holding) on bars [start, end - 1) of ``close`` (T, B; NaN = gap).

    ``impact_k > 0`` adds square-root impact (``strategies.costs.CostModel``), which needs ``adv`` and
    ``sigma_daily`` (T, B), known at each bar.

    Two engines compute the same book (``tests/strategies/test_engine_pinned.py`` holds them to the same
    numbers). A bar's weights depend on the past only through the last bar with orders, so :func:`drift_book`
    works them out for all bars at once and steps only through bars where some assets keep their drifted
    holding or a band decides from it. :func:`step_book` steps through every bar: it is needed for impact (a
    trade's cost depends on the equity reached), for a price of 0 (no growth ratio to take), and it is the
    faster of the two for a band when most bars carry orders (its step is cheaper; ``STEP_SHARE``).
    """
    T, B = close.shape
    end = T if end is None else min(end, T)
    if not 0 <= start < end - 1:
        raise ValueError(f"backtest needs at least two bars: start={start}, end={end}")
    costs = CostModel(fee_bps, slippage_bps, impact_k, capital)
    impact = impact_k > 0
    if impact and (adv is None or sigma_daily is None):
        raise ValueError("impact_k > 0 needs adv and sigma_daily")
    r = bar_returns(close[:end])
    tradable = np.isfinite(close[:end])
    if impact:
        tradable &= liquid(adv[:end])  # a trade whose impact cannot be priced is not made
    rows = slice(start, end - 1)
    want = tradable[rows] & np.isfinite(target[rows])  # an order, and a price to fill it at
    if impact or not np.all(r[rows] > -1.0) or (band > 0 and want.any(axis=1).mean() > STEP_SHARE):
        weights, turnover, gross, paid = step_book(
            r[rows], tradable[rows], target[rows], band, costs,
            None if adv is None else adv[rows], None if sigma_daily is None else sigma_daily[rows],
        )  # fmt: skip
    else:
        weights, turnover, gross = drift_book(r[rows], want, target[rows], band)
        paid = None
    cost = paid if impact else turnover * costs.rate
    net = (1.0 - cost) * (1.0 + gross) - 1.0
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])
    return BacktestResult(times[start : end - 1], times[start:end], weights, turnover, cost, gross, net, equity)


def step_book(
    r: np.ndarray,
    tradable: np.ndarray,
    target: np.ndarray,
    band: float,
    costs: CostModel,
    adv: np.ndarray | None,
    sigma_daily: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(weights, turnover, gross, impact-run cost) (n, B), (n,) x 3, stepping bar by bar from a flat book.

    Inputs are the backtest's rows (n, B). The general engine: a band needs the drifted weights to decide
    whether to trade, impact the equity reached to price the trade, so each bar waits for the last.
    """
    n, B = r.shape
    impact = costs.impact_k > 0
    want = tradable & np.isfinite(target)  # an order and a price to fill it; the band is decided per bar
    grow = 1.0 + r
    weights, before = np.zeros((n, B)), np.zeros((n, B))  # held after / before each bar's trade
    gross = np.zeros(n)
    paid = np.zeros(n)  # impact runs only: cost of each bar's trades, charged on the equity reached so far
    eq = 1.0
    w_pre = np.zeros(B)
    for t in range(n):
        tgt = target[t]
        do = want[t]
        if band > 0:
            do = do & (np.abs(np.where(do, tgt, w_pre) - w_pre) > band)
        w = np.where(do, tgt, w_pre)
        g = float(w @ r[t])
        if impact:
            paid[t] = costs.cost(w - w_pre, eq, adv[t], sigma_daily[t])
            eq *= (1.0 - paid[t]) * (1.0 + g)
        gross[t] = g
        weights[t] = w
        before[t] = w_pre
        w_pre = w * grow[t] / (1.0 + g) if 1.0 + g > WIPED_OUT else np.zeros(B)
    return weights, np.abs(weights - before).sum(axis=1), gross, paid


def drift_book(
    r: np.ndarray, want: np.ndarray, target: np.ndarray, band: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, turnover, gross) of the book given orders ``target`` where ``want`` (n, B), from a flat book.

    What :func:`step_book` computes without impact, with numpy over all bars instead of a Python step per
    bar. A book wiped out (1 + a bar's return <= ``WIPED_OUT``) holds nothing afterwards, as there: the bars
    after it start again from flat.
    """
    weights, w_pre = _from_flat(r, want, target, band)
    gross = np.einsum("ij,ij->i", weights, r)
    gone = np.flatnonzero(1.0 + gross[:-1] <= WIPED_OUT)  # a wipe-out on the last bar changes no later bar
    while gone.size:  # rare: recompute the bars after the first wipe-out from flat, then look again
        s = int(gone[0]) + 1
        weights[s:], w_pre[s:] = _from_flat(r[s:], want[s:], target[s:], band)
        gross[s:] = np.einsum("ij,ij->i", weights[s:], r[s:])
        gone = s + np.flatnonzero(1.0 + gross[s:-1] <= WIPED_OUT)
    return weights, np.abs(weights - w_pre).sum(axis=1), gross


def _from_flat(r: np.ndarray, want: np.ndarray, target: np.ndarray, band: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, pre-trade weights) (n, B) of a book that starts flat and is never wiped out.

    Between two bars with orders nothing trades: the book drifts with prices. From the weights ``w_a`` held
    after the last bar a with orders, asset i's value at bar t is ``w_a[i] * level[t, i] / level[a, i]``
    (``level``: cumulative growth, 1 + r compounded), cash stays ``1 - sum(w_a)``, and the drifted weights
    are value over their sum: closed-form for every bar given the weights at the bars with orders. Where
    every asset has an order those are the targets. A bar needs the drift up to it only where some assets
    keep their drifted holding (a gap, a "no order" NaN) or where a ``band`` decides from that holding
    whether to trade; the loop runs over those bars alone.
    """
    n, B = r.shape
    level = np.ones((n, B))
    # (n, B) growth of each asset before bar t, from bar 0. A ratio level[t] / level[a] carries the rounding
    # of the t - a products between a and t only (level[t] is built on the rounded level[a]), as the loop does.
    np.cumprod(1.0 + r[:-1], axis=0, out=level[1:])
    trades = want.any(axis=1)
    trades[0] = True  # bar 0 starts from flat, so its weights are known whether or not it trades
    last = np.maximum.accumulate(np.where(trades, np.arange(n), 0))  # last bar with orders at or before t
    prev = np.concatenate([[0], last[:-1]])  # ... strictly before t (bar 0: itself, unused)
    first = want[0] & (np.abs(target[0]) > band)  # bar 0 trades from 0: the band is decided on the target alone
    if band > 0:
        stepped = trades.copy()
    else:
        stepped = trades & ~want.all(axis=1)  # some assets trade, the others keep their drifted holding
        if stepped.any():  # an asset that holds nothing keeps nothing, whatever the drift: the weights are known
            stepped &= ~(want | _holds_nothing(want, target)).all(axis=1)
    stepped[0] = False
    weights = np.where(want, target, 0.0)  # final wherever every asset trades (no band)
    weights[0] = np.where(first, target[0], 0.0)
    w_pre = np.zeros((n, B))
    with np.errstate(divide="ignore", invalid="ignore"):  # past a wipe-out (recomputed by the caller)
        for t in np.flatnonzero(stepped):  # in time order: each needs the weights of the last bar with orders
            a = prev[t]
            if a == t - 1:  # one bar of drift: the loop's own formula, cheaper than the ratio of levels
                w = weights[a]
                w_pre[t] = w * (1.0 + r[a]) / (1.0 + float(w @ r[a]))
            else:
                w_pre[t] = _drift(weights[a].copy(), level[t] / level[a])
            weights[t] = _fill(want[t], target[t], w_pre[t], band)
        rest = np.flatnonzero(~stepped)[1:]  # every bar after 0 whose pre-trade weights the loop did not set
        growth = level[rest]  # gathered copies, worked on in place: at 100 assets x 50,000 bars each is 40 MB
        growth /= level[prev[rest]]
        w_pre[rest] = _drift(weights[prev[rest]], growth)
    weights[~trades] = w_pre[~trades]
    return weights, w_pre


def _fill(want: np.ndarray, target: np.ndarray, w_pre: np.ndarray, band: float) -> np.ndarray:
    """Weights (B,) after one bar's orders: the target where ordered and, with a band, far enough from
    ``w_pre``; ``w_pre`` elsewhere."""
    if band > 0:
        want = want & (np.abs(np.where(want, target, w_pre) - w_pre) > band)
    return np.where(want, target, w_pre)


def _holds_nothing(do: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n, B) whether each asset's weight is exactly 0 before bar t's trade, in a book that starts flat.

    True until its first trade and after a trade to 0 (drift leaves 0 at 0): an asset not listed yet, or
    one a long-only rule is out of, does not make a bar's untraded weights depend on the past.
    """
    n, B = do.shape
    last = np.maximum.accumulate(np.where(do, np.arange(n)[:, None], -1), axis=0)  # last trade at or before t
    before = np.vstack([np.full((1, B), -1), last[:-1]])  # ... strictly before t
    return (before < 0) | (target[np.maximum(before, 0), np.arange(B)] == 0.0)


def _drift(w: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """Weights ``w`` (..., B) after each asset grew by ``growth`` (..., B) and cash by nothing; ``w`` is
    overwritten with the result (a caller passes a copy: the bulk call's are large)."""
    total = 1.0 - w.sum(axis=-1, keepdims=True)  # cash
    w *= growth
    total += w.sum(axis=-1, keepdims=True)
    w /= total
    return w


def first_forecast(preds: np.ndarray) -> int:
    """First bar at which any asset has a forecast: where a strategy can start."""
    has = np.isfinite(preds).all(-1).any(-1)
    if not has.any():
        raise ValueError("no forecasts: every prediction is NaN")
    return int(np.argmax(has))


def assumptions(
    fee_bps: float, slippage_bps: float, band: float, impact_k: float = 0.0, capital: float = 1_000_000.0
) -> dict:
    return {
        "fills": "at the close of the bar the forecast was made after; held to the next close",
        "fee_bps": fee_bps,
        "slippage_bps": slippage_bps,
        "impact_k": impact_k,
        "capital": capital,
        "cost_model": "(fee + slippage) bps per unit of traded notional, plus impact_k x daily vol x "
        "sqrt(traded notional / ADV) per unit (ADV: average daily traded value over the 30 days to the bar; "
        "the book's notional is capital x equity), paid from equity at the trade",
        "rebalance_band": band,
        "rebalance_band_applies_to": "the rules of strategies.positions; the cost-aware rules (strategies.portfolio) "
        "decide their own trades from edge versus cost",
        "gaps": "no trade in an asset on a missing bar; marked at its last close; the move across a gap is "
        "booked when the price reappears",
        "sharpe": "hourly net returns, mean/std x sqrt(24*365), no risk-free rate",
        "annualised": f"{', '.join(M.ANNUALISED + M.INFERENCE)} are null for a stretch under "
        f"{M.MIN_ANNUALISE_BARS} bars (30 days)",
        "sharpe_ci": f"95% percentile interval, stationary bootstrap (Politis & Romano 1994) of the hourly net "
        f"returns, mean block {OF.BLOCK_BARS} bars, {OF.BOOTSTRAP_REPS} resamples, seed {OF.BOOTSTRAP_SEED}",
        "turnover": "average traded notional per day / equity",
        "max_drawdown": "largest peak-to-trough loss, positive fraction",
        "leverage": "none: at most 1/B of equity per asset, gross exposure <= 1; shorts allowed except in "
        "buy_and_hold and the *_long rules",
        "not_modelled": "funding/borrow costs of shorts, partial fills; impact is priced per bar as its own "
        "metaorder (no memory of the last hours' trades in the same direction)",
    }


EQUITY_SCHEMA = {
    "ts": pl.Int64,
    "strategy": pl.String,
    "equity": pl.Float64,
    "turnover": pl.Float64,
    "cost": pl.Float64,
}


def equity_frame(name: str, res: BacktestResult) -> pl.DataFrame:
    """One strategy's rows of ``equity.parquet``: per mark time ``ts``, equity before the trade at its close,
    and that trade's turnover and cost (0 on the last row: nothing trades after the last close)."""
    pad = np.zeros(1)
    return pl.DataFrame(
        {
            "ts": res.mark_times.astype(np.int64),
            "strategy": name,
            "equity": res.equity.astype(np.float64),
            "turnover": np.concatenate([res.turnover, pad]),
            "cost": np.concatenate([res.cost, pad]),
        },
        schema=EQUITY_SCHEMA,
    )


def backtest_from_preds(
    fp: FeaturePanel,
    preds: np.ndarray,
    regimes: tuple[Regime, ...],
    fee_bps: float = 10.0,
    slippage_bps: float = 2.0,
    band: float = DEFAULT_BAND,
    strategies: list[str] | None = None,
    trials: int | None = None,
    trials_sharpe_std: float | None = None,
    impact_k: float = 0.0,
    capital: float = 1_000_000.0,
) -> tuple[dict, pl.DataFrame]:
    """Backtest every strategy on forecasts ``preds`` (T, B, 3; volatility units; NaN where none).

    Returns the ``backtest.json`` document (``{"strategies": {name: {"total", "per_regime"}}, "trials", ...}``)
    and the equity frame (``ts`` ms int64, ``strategy``, ``equity``, and the ``turnover`` and ``cost`` of
    the trade at the close of ``ts``) that the tearsheet and the dashboard read. Every strategy, the benchmark
    included, starts at the first bar with a forecast, so they are comparable. Forecasts on bars whose
    features are undefined (``fp.mask`` False: gaps, warm-up) are ignored. ``trials``: how many variants were
    tried in all and ``trials_sharpe_std`` the spread of their annualised Sharpe ratios
    (:func:`strategies.metrics.deflate`), for the deflated Sharpe ratio.
    """
    preds = np.where(fp.mask[..., None], preds, np.nan)  # a forecast from undefined features is no forecast
    start = first_forecast(preds)
    raw = to_raw(preds, fp.sigma)
    tradable = np.isfinite(fp.close)
    doc: dict = {"strategies": {}}
    frames = []
    market = market_from(fp, CostModel(fee_bps, slippage_bps, impact_k, capital))
    for name in strategies or list(STRATEGIES):
        strategy = STRATEGIES[name]
        target = strategy.fn(raw, tradable, start, market)
        res = run_backtest(
            fp.times, fp.close, target, start, fee_bps=fee_bps, slippage_bps=slippage_bps,
            band=0.0 if strategy.cost_aware else band, impact_k=impact_k, capital=capital, adv=market.adv,
            sigma_daily=market.sigma_daily,
        )  # fmt: skip
        doc["strategies"][name] = {
            "description": STRATEGIES[name].description,
            "total": M.summarise(res.net, res.exposure, res.turnover, res.cost, res.gross),
            "per_regime": M.per_regime(res.times, res.net, res.exposure, res.turnover, res.cost, regimes, res.gross),
        }
        frames.append(equity_frame(name, res))
    doc["trials"] = M.deflate(doc["strategies"], trials, trials_sharpe_std)
    iso = [str(np.datetime64(int(t), "ms")) + "Z" for t in (fp.times[start], fp.times[-1])]
    doc["range"] = {"start": iso[0], "end": iso[1], "symbols": list(fp.symbols)}
    doc["regimes"] = [r.to_dict() for r in regimes]
    doc["assumptions"] = assumptions(fee_bps, slippage_bps, band, impact_k, capital)
    mu = raw[..., 1][np.isfinite(raw).all(-1)]
    if not np.any(mu != 0):
        doc["notes"] = ["the model forecasts variance only (no returns): signal_* strategies stay flat"]
    return doc, pl.concat(frames)
