"""Forecasts -> ``Signal`` events: raw units, uncertainty, the model's own regime reading, activity, and
what to hold (docs/signals.md).

The regime word is the model's reading of its own variance forecast (calm / normal / volatile by the
forecast next-day variance relative to the asset's recent scale); it is an output, never an input.

``confidence`` is ``2 P - 1`` with ``P = Phi(|ret_24h| / vol_24h)``: the probability, under the model's own
Gaussian forecast of the next-24h log return, that the return has the sign the forecast says. 0 is a coin
flip, 1 certainty. It is a property of the forecast alone, so every signal has one (it does not claim the
model is calibrated: docs/backtest.md measures that). ``weight`` and ``direction`` come from a position
rule: the learner may not import ``strategies``, so the command layer hands one in (:class:`PositionRule`,
implemented by ``strategies.portfolio.Rule``; ``strategies.positions.feed_rule`` is the one the feed uses)
or passes the weights it computed (:func:`signals_frame`). Without one they stay empty.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from continuum.schema import Signal, direction_of
from learner.protocol import HOURS_24, to_raw, to_units

CALM, VOLATILE = -0.4, 0.6  # log of forecast next-day variance over 24 sigma^2


class PositionRule(Protocol):
    """Target weights from forecasts, one bar at a time, with explicit state (a book) the caller keeps.

    The book has ``as_dict() -> dict[str, np.ndarray]``, which :meth:`load` turns back into a book.
    """

    def init(self, n_assets: int) -> Any:
        """A flat book."""

    def step_panel(self, book: Any, fp: Any, s: int, raw_s: np.ndarray) -> tuple[np.ndarray, Any]:
        """Weights (B,) after bar ``s`` of the FeaturePanel window ``fp`` given raw forecasts (B, 3); new book."""

    def load(self, state: dict[str, np.ndarray]) -> Any:
        """A book from ``book.as_dict()`` (checkpoints)."""


def confidence(ret_24h: np.ndarray | float, vol_24h: np.ndarray | float) -> np.ndarray:
    """``2 Phi(|ret_24h| / vol_24h) - 1 = erf(|z| / sqrt 2)``: 0 for a coin flip, toward 1 for certainty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(np.asarray(ret_24h, dtype=np.float64)) / (np.asarray(vol_24h, dtype=np.float64) * math.sqrt(2.0))
    return _erf(z)


_erf = np.vectorize(math.erf, otypes=[np.float64])  # numpy has no erf; a replay's 10^5 values take ~0.1 s


def regime_word(log_var_24h: float) -> str:
    if log_var_24h < CALM:
        return "calm"
    if log_var_24h > VOLATILE:
        return "volatile"
    return "normal"


def make_signal(
    model: str,
    exchange: str,
    symbol: str,
    ts: int,
    pred: np.ndarray,
    sigma: float,
    activity: dict[str, float] | None = None,
    weight: float | None = None,
) -> Signal:
    """pred = (z_ret_1h, z_ret_24h, log_var_24h) in volatility units; sigma = the bar's vol scale; ``weight``
    the target weight a position rule gave this asset (None: no rule, no direction)."""
    z = np.asarray(pred, dtype=np.float64)
    r1, r24, var24 = (float(v) for v in to_raw(z, sigma))
    sd24 = math.sqrt(var24)
    w = None if weight is None or not math.isfinite(weight) else float(weight)
    return Signal(
        model=model,
        exchange=exchange,
        symbol=symbol,
        ts=int(ts),
        ret_1h=r1,
        ret_24h=r24,
        vol_24h=sd24,
        ret_1h_std=sd24 / HOURS_24**0.5,
        ret_24h_std=sd24,
        regime=regime_word(float(z[2])),
        activity={k: float(v) for k, v in (activity or {}).items() if math.isfinite(float(v))},
        direction="" if w is None else direction_of(w),
        weight=w,
        confidence=float(confidence(r24, sd24)),
    )


def signals_frame(
    model: str,
    exchange: str,
    symbols: list[str],
    times: np.ndarray,
    preds: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray,
    activity: dict[str, np.ndarray] | None = None,
    weights: np.ndarray | None = None,
):
    """All forecasts of a replay as one lake-ready frame with exactly the ``Signal`` columns.

    ``weights`` (T, B): a position rule's target weights (``strategies.positions.feed_weights``); without
    them ``weight`` is null and ``direction`` empty. Vectorised (a replay has ~10^5-10^6 signals); the first
    and last rows are round-tripped through ``Signal`` so the frame cannot drift from the schema.
    """
    import json

    import polars as pl

    ok = mask & np.isfinite(preds).all(-1)
    ti, bi = np.nonzero(ok)
    z = preds[ti, bi].astype(np.float64)
    raw = to_raw(z, sigma[ti, bi])
    sd24 = np.sqrt(raw[:, 2])
    act_cols = {k: v[ti, bi] for k, v in (activity or {}).items()}
    names = sorted(act_cols)
    acts = [json.dumps({k: float(act_cols[k][i]) for k in names}, sort_keys=True) for i in range(len(ti))]
    regime = np.where(z[:, 2] < CALM, "calm", np.where(z[:, 2] > VOLATILE, "volatile", "normal"))
    w = np.full(len(ti), np.nan) if weights is None else np.asarray(weights, dtype=np.float64)[ti, bi]
    side = np.array([direction_of(v) if math.isfinite(v) else "" for v in w.tolist()], dtype=object)
    df = pl.DataFrame(
        {
            "model": model,
            "exchange": exchange,
            "symbol": np.array(symbols, dtype=object)[bi].astype(str),
            "ts": times[ti].astype(np.int64),
            "ret_1h": raw[:, 0],
            "ret_24h": raw[:, 1],
            "vol_24h": sd24,
            "ret_1h_std": sd24 / HOURS_24**0.5,
            "ret_24h_std": sd24,
            "regime": regime.astype(str),
            "activity": acts,
            "direction": side.astype(str),
            "weight": w,
            "confidence": confidence(raw[:, 1], sd24),
        },
        schema_overrides={"direction": pl.String, "weight": pl.Float64, "confidence": pl.Float64},
    ).with_columns(pl.col("weight").fill_nan(None))
    for row in (df.head(1), df.tail(1)):
        for sig in frame_to_signals(row):
            assert sig.KIND == "signal"  # constructing Signal validates every field
    return df


def frame_to_signals(df):
    """Rows of a signals frame back to validated ``Signal`` events (rows written before v2 lack or null the
    ``direction``/``weight``/``confidence`` columns: they take the schema's defaults)."""
    import json

    for r in df.iter_rows(named=True):
        r = {k: v for k, v in r.items() if not (k in _V2_FIELDS and v is None)}
        r["activity"] = json.loads(r["activity"]) if isinstance(r["activity"], str) else (r["activity"] or {})
        yield Signal(**r)


_V2_FIELDS = ("direction", "weight", "confidence")


def preds_from_frame(df, symbols: list[str], times: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The inverse of :func:`signals_frame`: forecasts (T, B, 3) in volatility units on a panel's grid.

    ``df`` has at least ``symbol, ts, ret_1h, ret_24h, vol_24h``; rows off the grid or for other symbols
    are ignored, and (bar, asset) pairs without a finite forecast stay NaN. The raw numbers are divided by
    the panel's own causal scale at the same bar, so :func:`learner.protocol.to_raw` gives them back.
    """
    import polars as pl

    col = {s: j for j, s in enumerate(symbols)}
    df = df.filter(pl.col("symbol").is_in(list(col)))
    step = int(times[1] - times[0]) if len(times) > 1 else 3_600_000
    ts = df["ts"].to_numpy()
    t_idx = (ts - times[0]) // step
    ok = (t_idx >= 0) & (t_idx < len(times)) & (ts % step == times[0] % step)
    preds = np.full((len(times), len(symbols), 3), np.nan, dtype=np.float32)
    if not ok.any():
        return preds
    ti = t_idx[ok].astype(np.int64)
    bi = np.array([col[s] for s in df["symbol"].to_list()], dtype=np.int64)[ok]
    raw = np.stack([df["ret_1h"].to_numpy()[ok], df["ret_24h"].to_numpy()[ok], df["vol_24h"].to_numpy()[ok] ** 2], -1)
    preds[ti, bi] = to_units(raw, sigma[ti, bi])
    preds[~np.isfinite(preds).all(-1)] = np.nan
    return preds


FEED_COLUMNS = (
    "time", "model", "exchange", "symbol", "direction", "weight", "confidence", "ret_24h", "vol_24h", "ret_1h",
    "regime", "enter_long", "exit_long", "enter_short", "exit_short", "ts",
)  # fmt: skip


def latest(signals, last: int = 1):
    """The newest ``last`` signals of every (model, symbol) in a signals ``LazyFrame``, as the feed shows them.

    Rows are oldest first within each asset, assets in name order. ``time`` is the bar's open time (ISO, UTC;
    the forecast was made at its close). ``enter_long`` ... ``exit_short`` are freqtrade's signal columns (1 or
    0), from the change of ``direction`` since the asset's previous signal: ``enter_long`` when it turns long,
    ``exit_long`` when it stops being long, and the same for short. Rows written before v2 have no
    direction (empty) and so no entries or exits, and no weight; their confidence, a function of the
    forecast alone, is computed here.
    """
    import polars as pl

    side = pl.col("direction").fill_null("")
    prev = side.shift(1).over("model", "symbol").fill_null("")
    flags = {
        "enter_long": (side == "long") & (prev != "long"),
        "exit_long": (side != "long") & (prev == "long"),
        "enter_short": (side == "short") & (prev != "short"),
        "exit_short": (side != "short") & (prev == "short"),
    }
    cols = signals.collect_schema().names()
    for c, dtype in (("direction", pl.String), ("weight", pl.Float64), ("confidence", pl.Float64)):
        if c not in cols:
            signals = signals.with_columns(pl.lit(None, dtype=dtype).alias(c))  # a lake of v1 signals only
    df = (
        signals.sort("model", "symbol", "ts")
        .group_by("model", "symbol", maintain_order=True)
        .tail(last + 1)  # one more: the first shown row's entry/exit needs its predecessor
        .with_columns(
            side.alias("direction"),
            pl.from_epoch("ts", time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("time"),
            **{k: v.cast(pl.Int8) for k, v in flags.items()},
        )
        .group_by("model", "symbol", maintain_order=True)
        .tail(last)
        .select(FEED_COLUMNS)
        .collect()
    )
    derived = pl.Series(confidence(df["ret_24h"].to_numpy(), df["vol_24h"].to_numpy()), dtype=pl.Float64)
    return df.with_columns(pl.col("confidence").fill_null(derived)).sort("symbol", "model", "ts")
