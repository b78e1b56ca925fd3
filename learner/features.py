"""Causal hourly features and targets per asset, as named polars expressions.

Every feature at bar t uses data from bars <= t only (a value is known when bar t closes). Scale
comes from a slow EWMA of squared returns (``sigma``, half-life one week), so a 2017 hour and a 2023
hour look alike to the model: features are in units of the asset's own recent volatility, and so
are the targets the models are trained on. Missing bars are never forward-filled: the row's
``present`` is False, its features are zero and it is masked everywhere downstream.

Targets (what is forecast at bar t, known at t+h):
- ``ret_1h``  = log(close[t+1] / close[t])
- ``ret_24h`` = log(close[t+24] / close[t])
- ``rv_24h``  = sum_{i=1..24} ret_1h[t+i]^2   (next-day realised variance)
A target is valid only if every bar it spans is present.

Onchain context enters through :class:`OnchainSource` (see ``learner.onchain``): same columns for
every asset, causal, normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from continuum.panel import Panel
from learner.protocol import unit_scale

HALF_LIFE_SCALE = 168  # hours: the volatility unit everything is expressed in
ADV_BARS = 24 * 30  # hourly bars in the trailing window of the average daily traded value (liquidity)
HORIZONS = {"ret_1h": 1, "ret_24h": 24, "rv_24h": 24}
TARGETS = ("ret_1h", "ret_24h", "rv_24h")
MAX_HORIZON = 24
CLIP = 8.0


class OnchainSource(Protocol):
    """Market-wide context for every asset: causal, normalised, NaN where unknown."""

    names: list[str]

    def features(self, times_ms: np.ndarray) -> np.ndarray:  # (T,) int64 -> (T, F) float32
        ...


def _ret(h: int) -> pl.Expr:
    return (pl.col("lc") - pl.col("lc").shift(h)).over("symbol")


def _sum_sq(h: int) -> pl.Expr:
    return pl.col("r2").rolling_sum(h, min_samples=h).over("symbol")


# ----------------------------------------------------------------------------- per-asset features
# Each is an expression over a long frame (symbol, t, lc=log close, r=1h log return, r2, sigma, ...),
# sorted by time within symbol. Names are what models and reports see.
FEATURES: dict[str, pl.Expr] = {
    "r_1h": pl.col("r") / pl.col("sigma"),
    "r_6h": _ret(6) / (pl.col("sigma") * 6**0.5),
    "r_24h": _ret(24) / (pl.col("sigma") * 24**0.5),
    "r_168h": _ret(168) / (pl.col("sigma") * 168**0.5),
    "lrv_1h": (pl.col("r2") / pl.col("sigma") ** 2 + 1e-3).log(),
    "lrv_6h": (_sum_sq(6) / (6 * pl.col("sigma") ** 2) + 1e-3).log(),
    "lrv_24h": (_sum_sq(24) / (24 * pl.col("sigma") ** 2) + 1e-3).log(),
    "lrv_168h": (_sum_sq(168) / (168 * pl.col("sigma") ** 2) + 1e-3).log(),
    "range_1h": (pl.col("lh") - pl.col("ll")) / pl.col("sigma"),
    "vol_z": (
        (pl.col("lv") - pl.col("lv").ewm_mean(half_life=168, ignore_nulls=True).over("symbol"))
        / (pl.col("lv").ewm_std(half_life=168, ignore_nulls=True).over("symbol") + 1e-6)
    ),
    "log_sigma_z": (
        (pl.col("sigma").log() - pl.col("sigma").log().ewm_mean(half_life=24 * 90).over("symbol"))
        / (pl.col("sigma").log().ewm_std(half_life=24 * 90).over("symbol") + 1e-3)
    ),
}
# Liquidity, for costs (not a model input): the average daily traded value in the quote currency over the
# trailing 30 days, bars <= t (gaps skipped). Close x base volume stands in for the bar's VWAP x volume.
ADV: pl.Expr = (pl.col("close") * pl.col("volume")).rolling_mean(ADV_BARS, min_samples=1).over("symbol") * 24

# Cross-asset context: the cross-sectional mean at the same bar (market factor), known at t.
CROSS = ("r_1h", "r_24h", "lrv_24h")
# Calendar: intraday and weekly seasonality of volatility are strong and fully known in advance.
CALENDAR = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")


def feature_names(onchain: OnchainSource | None = None) -> list[str]:
    names = list(FEATURES) + [f"mkt_{c}" for c in CROSS] + list(CALENDAR)
    return names + ([f"oc_{n}" for n in onchain.names] if onchain else [])


@dataclass
class FeaturePanel:
    """Model inputs and targets as arrays. B = assets, T = bars, F = features, K = targets."""

    symbols: list[str]
    times: np.ndarray  # (T,) int64 ms
    names: list[str]
    x: np.ndarray  # (T, B, F) float32, zero where masked
    mask: np.ndarray  # (T, B) bool: bar present and features defined
    sigma: np.ndarray  # (T, B) float64: hourly vol scale at t (EWMA, causal)
    y: np.ndarray  # (T, B, K) float64: raw targets (ret_1h, ret_24h, rv_24h) for forecasts made at t
    ymask: np.ndarray  # (T, B, K) bool: target valid (every spanned bar present)
    close: np.ndarray  # (T, B) float64
    volume: np.ndarray | None = None  # (T, B) float64: traded base volume of bar t; NaN on gaps
    adv: np.ndarray | None = None  # (T, B) float64: average daily traded value (quote ccy) over 30 days to t

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.x.shape

    def y_norm(self) -> np.ndarray:
        """Targets in volatility units: ret / sigma*sqrt(h); rv / (24 sigma^2). (T, B, K)."""
        return np.where(self.ymask, self.y / unit_scale(self.sigma), 0.0)

    def slice(self, a: int, b: int) -> FeaturePanel:
        return FeaturePanel(
            self.symbols,
            self.times[a:b],
            self.names,
            self.x[a:b],
            self.mask[a:b],
            self.sigma[a:b],
            self.y[a:b],
            self.ymask[a:b],
            self.close[a:b],
            None if self.volume is None else self.volume[a:b],
            None if self.adv is None else self.adv[a:b],
        )


def build_features(panel: Panel, onchain: OnchainSource | None = None) -> FeaturePanel:
    """Compute features and targets for every (bar, asset) of the panel."""
    T, B = panel.close.shape
    long = (
        pl.DataFrame(
            {
                "t": np.repeat(np.arange(T), B),
                "symbol": np.tile(np.arange(B), T),
                "close": panel.close.reshape(-1),
                "high": panel.high.reshape(-1),
                "low": panel.low.reshape(-1),
                "volume": panel.volume.reshape(-1),
            }
        )
        .fill_nan(None)
        .sort("symbol", "t")
    )  # gaps are nulls: polars' windows skip them, never fill them
    long = long.with_columns(
        pl.col("close").log().alias("lc"),
        pl.col("high").log().alias("lh"),
        pl.col("low").log().alias("ll"),
        (pl.col("volume") + 1e-9).log().alias("lv"),
    ).with_columns((pl.col("lc") - pl.col("lc").shift(1)).over("symbol").alias("r"))
    long = long.with_columns((pl.col("r") ** 2).alias("r2"))
    # sigma: EWMA of squared returns, causal; gaps do not update it. Floor avoids 0 on dead feeds.
    long = long.with_columns(
        (pl.col("r2").ewm_mean(half_life=HALF_LIFE_SCALE, ignore_nulls=True, min_samples=24).over("symbol"))
        .sqrt()
        .clip(lower_bound=1e-4)
        .alias("sigma")
    )
    long = long.with_columns(**{n: e for n, e in FEATURES.items()})
    # targets: future-looking by construction, used only as labels released after their horizon
    fut = {
        "y_ret_1h": (pl.col("lc").shift(-1) - pl.col("lc")).over("symbol"),
        "y_ret_24h": (pl.col("lc").shift(-24) - pl.col("lc")).over("symbol"),
        "y_rv_24h": pl.col("r2").rolling_sum(24, min_samples=24).shift(-24).over("symbol"),
    }
    long = long.with_columns(**fut, adv=ADV).sort("t", "symbol")

    def grid(col: str) -> np.ndarray:
        return long[col].to_numpy().astype(np.float64).reshape(T, B)

    per_asset = np.stack([grid(n) for n in FEATURES], axis=-1)  # (T, B, F0)
    sigma = grid("sigma")
    present = panel.present & np.isfinite(sigma)
    per_asset = np.where(present[..., None], per_asset, np.nan)
    # cross-sectional means over assets present at t
    idx = [list(FEATURES).index(c) for c in CROSS]
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        cross = np.nanmean(per_asset[..., idx], axis=1, keepdims=True)  # (T, 1, C)
    cross = np.repeat(cross, B, axis=1)
    hours = (panel.times // 3_600_000) % 24
    dow = (panel.times // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday
    cal = np.stack(
        [
            np.sin(2 * np.pi * hours / 24),
            np.cos(2 * np.pi * hours / 24),
            np.sin(2 * np.pi * dow / 7),
            np.cos(2 * np.pi * dow / 7),
        ],
        axis=-1,
    )
    cal = np.repeat(cal[:, None, :], B, axis=1)
    parts = [per_asset, cross, cal]
    if onchain is not None:
        oc = np.asarray(onchain.features(panel.times), dtype=np.float64)  # (T, Fo)
        parts.append(np.repeat(oc[:, None, :], B, axis=1))
    x = np.concatenate(parts, axis=-1)
    finite = np.isfinite(x)
    # a bar is usable when it is present and its own price features exist (slow features like
    # r_168h may still be warming up: they are zeroed, not a reason to drop the bar)
    mask = present & finite[..., : len(FEATURES)][..., :4].all(-1)
    x = np.where(finite & mask[..., None], np.clip(x, -CLIP, CLIP), 0.0).astype(np.float32)
    y = np.stack([grid("y_ret_1h"), grid("y_ret_24h"), grid("y_rv_24h")], axis=-1)
    ymask = np.isfinite(y) & mask[..., None]
    y = np.where(ymask, y, 0.0)
    volume = np.where(panel.present, panel.volume, np.nan)
    return FeaturePanel(
        panel.symbols, panel.times, feature_names(onchain), x, mask, sigma, y, ymask, panel.close, volume, grid("adv")
    )


def realised_at(t: int, horizon: int) -> int:
    """The bar at whose close a forecast made at bar ``t`` with this horizon becomes observable."""
    return t + horizon
