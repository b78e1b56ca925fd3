"""Forecasts -> ``Signal`` events: raw units, uncertainty, the model's own regime reading, activity.

The regime word is the model's reading of its own variance forecast (calm / normal / volatile by the
forecast next-day variance relative to the asset's recent scale); it is an output, never an input.
"""

from __future__ import annotations

import math

import numpy as np

from continuum.schema import Signal
from learner.protocol import HOURS_24, to_raw, to_units

CALM, VOLATILE = -0.4, 0.6  # log of forecast next-day variance over 24 sigma^2


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
) -> Signal:
    """pred = (z_ret_1h, z_ret_24h, log_var_24h) in volatility units; sigma = the bar's vol scale."""
    z = np.asarray(pred, dtype=np.float64)
    r1, r24, var24 = (float(v) for v in to_raw(z, sigma))
    sd24 = math.sqrt(var24)
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
):
    """All forecasts of a replay as one lake-ready frame with exactly the ``Signal`` columns.

    Vectorised (a replay has ~10^5-10^6 signals); the first and last rows are round-tripped through
    ``Signal`` so the frame cannot drift from the schema.
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
        }
    )
    for row in (df.head(1), df.tail(1)):
        for sig in frame_to_signals(row):
            assert sig.KIND == "signal"  # constructing Signal validates every field
    return df


def frame_to_signals(df):
    """Rows of a signals frame back to validated ``Signal`` events."""
    import json

    for r in df.iter_rows(named=True):
        r = dict(r)
        r["activity"] = json.loads(r["activity"]) if isinstance(r["activity"], str) else (r["activity"] or {})
        yield Signal(**r)


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
