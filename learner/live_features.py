"""The features of :mod:`learner.features`, bar by bar: what the live service computes when a bar closes.

``build_features`` recomputes every feature over a whole panel; the live service used to call it over its
rolling window for every bar, which grows with the window (about 300 ms for 64 assets and 4,800 bars,
bench/live_latency.py) and, once the window is full, restarts the slow EWMAs at the window's first bar.
:class:`IncrementalFeatures` carries the state those expressions need from bar to bar instead — the EWMAs'
weighted sums, the last 720 bars for the rolling sums, shifts and the liquidity mean — so one bar costs the
same whatever the history, and the features equal ``build_features`` over *all* bars so far (float rounding
aside: tests/learner/test_live_features.py checks it on real bars with gaps, to 1e-9).

The polars semantics reproduced (``learner.features``): a missing bar is null; ``shift(h)`` and
``rolling_sum(h, min_samples=h)`` count grid bars; ``ewm_mean(ignore_nulls=True)`` decays only at observed
values, ``ignore_nulls=False`` (``log_sigma_z``) by grid bars; ``ewm_std`` is the bias-corrected weighted
standard deviation; a statistic is null where its input is null.

Example::

    inc = IncrementalFeatures(["BTC/USDT", "ETH/USDT"], "1h")
    for ts, ohlcv in bars:          # ohlcv (5, B): open, high, low, close, volume; NaN where missing
        inc.step(ts, ohlcv)
    fp = inc.tail(25)               # a FeaturePanel of the last 25 bars (targets known so far)
"""

from __future__ import annotations

import math

import numpy as np

from learner.features import (
    ADV_BARS,
    CLIP,
    CROSS,
    FEATURES,
    HALF_LIFE_SCALE,
    MAX_HORIZON,
    FeaturePanel,
    OnchainSource,
    feature_names,
)

HISTORY = ADV_BARS  # bars kept for shifts, rolling sums and the liquidity mean (720 >= 168 + 24 + 1)
TAIL = 64  # computed rows kept for tail(): more than MAX_HORIZON + 1
_CROSS_IDX = [list(FEATURES).index(c) for c in CROSS]


def _alpha(half_life: float) -> float:
    return 1.0 - math.exp(-math.log(2.0) / half_life)


class _Ewm:
    """Running weighted sums of one EWMA per asset (adjust=True): mean and bias-corrected std."""

    def __init__(self, n: int, half_life: float, ignore_nulls: bool, min_samples: int = 1):
        self.keep = 1.0 - _alpha(half_life)
        self.ignore_nulls, self.min_samples = ignore_nulls, min_samples
        self.s0, self.s1, self.s2, self.q = (np.zeros(n) for _ in range(4))  # sum w, w x, w x^2, w^2
        self.count = np.zeros(n, dtype=np.int64)
        self.last = np.full(n, -1, dtype=np.int64)  # bar of the last observation

    def update(self, k: int, x: np.ndarray) -> np.ndarray:
        """Fold bar ``k``'s values in; returns where they were observed."""
        obs = np.isfinite(x)
        d = np.full(x.shape, self.keep)
        if not self.ignore_nulls:  # weights decay by grid bars, also across missing ones
            d = np.where(self.last >= 0, self.keep ** (k - self.last), 0.0)
        xo = np.where(obs, x, 0.0)
        self.s0 = np.where(obs, d * self.s0 + 1.0, self.s0)
        self.s1 = np.where(obs, d * self.s1 + xo, self.s1)
        self.s2 = np.where(obs, d * self.s2 + xo * xo, self.s2)
        self.q = np.where(obs, d * d * self.q + 1.0, self.q)
        self.count += obs
        self.last = np.where(obs, k, self.last)
        return obs

    def mean(self, obs: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.s1 / self.s0
        return np.where(obs & (self.count >= self.min_samples), m, np.nan)

    def std(self, obs: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.s1 / self.s0
            var = (self.s2 / self.s0 - m * m) * self.s0**2 / (self.s0**2 - self.q)
            sd = np.sqrt(np.maximum(var, 0.0))
        return np.where(obs & (self.count >= 2), sd, np.nan)

    def state(self) -> dict[str, np.ndarray]:
        return {"s0": self.s0, "s1": self.s1, "s2": self.s2, "q": self.q, "count": self.count, "last": self.last}

    def load(self, st: dict[str, np.ndarray]) -> None:
        for k, v in st.items():
            setattr(self, k, np.array(v))


class IncrementalFeatures:
    """Bar-by-bar features of ``len(symbols)`` assets (see the module docstring)."""

    def __init__(self, symbols: list[str], timeframe: str = "1h", onchain: OnchainSource | None = None):
        B = len(symbols)
        self.symbols, self.timeframe, self.onchain = list(symbols), timeframe, onchain
        self.names = feature_names(onchain)
        self.k = -1  # index of the last bar stepped
        self.sigma_ewm = _Ewm(B, HALF_LIFE_SCALE, ignore_nulls=True, min_samples=24)
        self.lv_ewm = _Ewm(B, 168, ignore_nulls=True)
        self.ls_ewm = _Ewm(B, 24 * 90, ignore_nulls=False)
        # the last HISTORY bars (row = bar % HISTORY): log close, squared return, close x volume
        self.lc = np.full((HISTORY, B), np.nan)
        self.r2 = np.full((HISTORY, B), np.nan)
        self.cv = np.full((HISTORY, B), np.nan)
        # the last TAIL bars' computed rows (row = bar % TAIL)
        F = len(self.names)
        self.t_times = np.zeros(TAIL, dtype=np.int64)
        self.t_x = np.zeros((TAIL, B, F), dtype=np.float32)
        self.t_mask = np.zeros((TAIL, B), dtype=bool)
        self.t_sigma, self.t_close, self.t_volume, self.t_adv, self.t_mark = (
            np.full((TAIL, B), np.nan) for _ in range(5)
        )
        self.mark = np.full(B, np.nan)  # last present close at or before the last bar (positions' returns)

    # ------------------------------------------------------------------ one bar
    def _back(self, ring: np.ndarray, h: int) -> np.ndarray:
        """Row of bar k - h (NaN before the first bar)."""
        return ring[(self.k - h) % HISTORY] if self.k - h >= 0 else np.full(ring.shape[1], np.nan)

    def _rolling_sum(self, h: int) -> np.ndarray:
        """Sum of r2 over bars k-h+1..k; NaN unless all h are there."""
        if self.k + 1 < h:
            return np.full(self.r2.shape[1], np.nan)
        rows = [(self.k - i) % HISTORY for i in range(h)]
        return self.r2[rows].sum(axis=0)  # NaN propagates: min_samples = h

    def step(self, ts: int, ohlcv: np.ndarray) -> None:
        """Add bar ``ts`` (the next on the grid): ``ohlcv`` (5, B), NaN where the bar is missing."""
        _o, h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in ohlcv)
        self.k += 1
        k, row = self.k, self.k % HISTORY
        with np.errstate(invalid="ignore", divide="ignore"):
            lc, lh, ll, lv = np.log(c), np.log(h), np.log(lo), np.log(v + 1e-9)
            r = lc - self._back(self.lc, 1)
            r2 = r * r
            self.lc[row], self.r2[row], self.cv[row] = lc, r2, c * v
            obs = self.sigma_ewm.update(k, r2)
            sigma = np.maximum(np.sqrt(self.sigma_ewm.mean(obs)), 1e-4)
            lv_obs = self.lv_ewm.update(k, lv)
            ls = np.log(sigma)
            ls_obs = self.ls_ewm.update(k, ls)
            feats = {
                "r_1h": r / sigma,
                "r_6h": (lc - self._back(self.lc, 6)) / (sigma * 6**0.5),
                "r_24h": (lc - self._back(self.lc, 24)) / (sigma * 24**0.5),
                "r_168h": (lc - self._back(self.lc, 168)) / (sigma * 168**0.5),
                "lrv_1h": np.log(r2 / sigma**2 + 1e-3),
                "lrv_6h": np.log(self._rolling_sum(6) / (6 * sigma**2) + 1e-3),
                "lrv_24h": np.log(self._rolling_sum(24) / (24 * sigma**2) + 1e-3),
                "lrv_168h": np.log(self._rolling_sum(168) / (168 * sigma**2) + 1e-3),
                "range_1h": (lh - ll) / sigma,
                "vol_z": (lv - self.lv_ewm.mean(lv_obs)) / (self.lv_ewm.std(lv_obs) + 1e-6),
                "log_sigma_z": (ls - self.ls_ewm.mean(ls_obs)) / (self.ls_ewm.std(ls_obs) + 1e-3),
            }
            n = min(k + 1, ADV_BARS)
            window = self.cv[[(k - i) % HISTORY for i in range(n)]]
            seen = np.isfinite(window).sum(axis=0)
            adv = np.where(seen > 0, np.nansum(window, axis=0) / np.maximum(seen, 1), np.nan) * 24
        per_asset = np.stack([feats[n] for n in FEATURES], axis=-1)  # (B, F0)
        present_bar = np.isfinite(c)
        present = present_bar & np.isfinite(sigma)
        per_asset = np.where(present[:, None], per_asset, np.nan)
        with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
            sup.filter(RuntimeWarning)
            cross = np.nanmean(per_asset[:, _CROSS_IDX], axis=0)  # (C,)
        hour, dow = (ts // 3_600_000) % 24, (ts // 86_400_000 + 3) % 7
        cal = np.array([np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                        np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)])  # fmt: skip
        B = len(self.symbols)
        parts = [per_asset, np.repeat(cross[None], B, 0), np.repeat(cal[None], B, 0)]
        if self.onchain is not None:
            oc = np.asarray(self.onchain.features(np.array([ts], dtype=np.int64)), dtype=np.float64)[0]
            parts.append(np.repeat(oc[None], B, 0))
        x = np.concatenate(parts, axis=-1)
        finite = np.isfinite(x)
        mask = present & finite[:, :4].all(-1)
        x = np.where(finite & mask[:, None], np.clip(x, -CLIP, CLIP), 0.0).astype(np.float32)
        self.mark = np.where(present_bar, c, self.mark)
        t = k % TAIL
        self.t_times[t], self.t_x[t], self.t_mask[t], self.t_sigma[t] = ts, x, mask, sigma
        self.t_close[t], self.t_volume[t], self.t_adv[t], self.t_mark[t] = (
            c,
            np.where(present_bar, v, np.nan),
            adv,
            self.mark,
        )

    # ------------------------------------------------------------------ reading
    def tail(self, n: int = MAX_HORIZON + 1) -> tuple[FeaturePanel, np.ndarray]:
        """The last ``n`` bars as a FeaturePanel (targets as far as the bars so far realise them), and each
        row's last present close at or before it (``mark``: what positions book returns from)."""
        n = min(n, self.k + 1, TAIL)
        bars = list(range(self.k - n + 1, self.k + 1))
        rows = [b % TAIL for b in bars]
        mask = self.t_mask[rows]
        y = np.full((n, len(self.symbols), 3), np.nan)
        with np.errstate(invalid="ignore"):
            for i, b in enumerate(bars):
                lc_b = self.lc[b % HISTORY]
                if b + 1 <= self.k:
                    y[i, :, 0] = self.lc[(b + 1) % HISTORY] - lc_b
                if b + MAX_HORIZON <= self.k:
                    y[i, :, 1] = self.lc[(b + MAX_HORIZON) % HISTORY] - lc_b
                    y[i, :, 2] = self.r2[[(b + j) % HISTORY for j in range(1, MAX_HORIZON + 1)]].sum(axis=0)
        ymask = np.isfinite(y) & mask[..., None]
        fp = FeaturePanel(
            self.symbols, self.t_times[rows].copy(), self.names, self.t_x[rows], mask, self.t_sigma[rows],
            np.where(ymask, y, 0.0), ymask, self.t_close[rows], self.t_volume[rows], self.t_adv[rows],
        )  # fmt: skip
        return fp, self.t_mark[rows]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """Everything needed to continue exactly (arrays and ints: checkpoint-safe)."""
        out: dict = {"k": self.k, "mark": self.mark}
        for name in ("lc", "r2", "cv", "t_times", "t_x", "t_mask", "t_sigma", "t_close", "t_volume", "t_adv",
                     "t_mark"):  # fmt: skip
            out[name] = getattr(self, name)
        for name in ("sigma_ewm", "lv_ewm", "ls_ewm"):
            out[name] = getattr(self, name).state()
        return out

    def load(self, st: dict) -> None:
        self.k = int(st["k"])
        for name, v in st.items():
            if name in ("sigma_ewm", "lv_ewm", "ls_ewm"):
                getattr(self, name).load(v)
            elif name != "k":
                setattr(self, name, np.array(v))
