"""Error measures in the units users read (log returns, variances), and the continual-learning summary.

Forecasts arrive in volatility units and are mapped back with the scale known at forecast time
(:func:`learner.protocol.to_raw`).

- ``ret_1h_mse``, ``ret_24h_mse``: mean squared error of log returns.
- ``vol_24h_qlike``: QLIKE(rv, v) = rv/v - log(rv/v) - 1, the robust loss for variance forecasts
  (Patton 2011); 0 is perfect.
- ``hit_rate_1h``: share of bars where the forecast's sign is right (a zero forecast counts 1/2).
- ``rank_ic_24h``: mean over bars of the cross-sectional Spearman correlation of forecast and realised
  24h returns (bars with at least 3 assets).

Forgetting uses R[i][j] = vol_24h_qlike of the state after regime i on the held-out weeks of regime j
(lower is better), so ``bwt = mean_j<T (R[T,j] - R[j,j])`` is positive when the model forgot and
``avg_forgetting = mean_j<T (R[T,j] - min_{l<T} R[l,j])`` (Chaudhry et al. 2018, for errors).
"""

from __future__ import annotations

import numpy as np

KEYS = ("ret_1h_mse", "ret_24h_mse", "vol_24h_qlike", "hit_rate_1h", "rank_ic_24h")


def qlike(rv: np.ndarray, v: np.ndarray) -> np.ndarray:
    ratio = np.maximum(rv, 1e-12) / np.maximum(v, 1e-12)
    return ratio - np.log(ratio) - 1


def per_bar(raw: np.ndarray, y: np.ndarray, ok: np.ndarray) -> dict[str, np.ndarray]:
    """Per-(bar, asset) errors; NaN where not scored. raw/y (T,B,3), ok (T,B,3)."""
    with np.errstate(invalid="ignore"):
        se1 = np.where(ok[..., 0], (raw[..., 0] - y[..., 0]) ** 2, np.nan)
        se24 = np.where(ok[..., 1], (raw[..., 1] - y[..., 1]) ** 2, np.nan)
        ql = np.where(ok[..., 2], qlike(y[..., 2], raw[..., 2]), np.nan)
        hit = np.where(raw[..., 0] == 0, 0.5, (np.sign(raw[..., 0]) == np.sign(y[..., 0])).astype(float))
        hit = np.where(ok[..., 0] & (y[..., 0] != 0), hit, np.nan)
    return {"se_1h": se1, "se_24h": se24, "qlike": ql, "hit": hit}


def rank_ic(pred24: np.ndarray, y24: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(T,) cross-sectional Spearman correlation per bar (average ranks for ties); NaN with fewer than
    3 assets or no spread — a constant forecast has no rank information and scores NaN, not a number."""
    from scipy.stats import rankdata

    p = np.where(ok, pred24, np.nan)
    r = np.where(ok, y24, np.nan)
    rp = rankdata(p, axis=1, nan_policy="omit")
    rr = rankdata(r, axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mp = np.nanmean(rp, 1, keepdims=True)
        mr = np.nanmean(rr, 1, keepdims=True)
        cov = np.nansum((rp - mp) * (rr - mr), 1)
        den = np.sqrt(np.nansum((rp - mp) ** 2, 1) * np.nansum((rr - mr) ** 2, 1))
        ic = cov / den
    ic[(ok.sum(1) < 3) | ~np.isfinite(ic)] = np.nan
    return ic


def summarise(errs: dict[str, np.ndarray], ic: np.ndarray, rows: np.ndarray) -> dict[str, float | None]:
    """The five headline numbers over the bars selected by ``rows`` (T,) bool."""

    def mean(a: np.ndarray) -> float | None:
        v = a[rows]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else None

    icv = ic[rows]
    icv = icv[np.isfinite(icv)]
    return {
        "ret_1h_mse": mean(errs["se_1h"]),
        "ret_24h_mse": mean(errs["se_24h"]),
        "vol_24h_qlike": mean(errs["qlike"]),
        "hit_rate_1h": mean(errs["hit"]),
        "rank_ic_24h": float(icv.mean()) if icv.size else 0.0,
    }


def forgetting(R: list[list[float | None]], rows_streamed: list[int]) -> tuple[float | None, float | None]:
    """(bwt, avg_forgetting) from R over the regimes that were streamed (or pre-trained on)."""
    idx = [i for i in rows_streamed if R[i][i] is not None]
    if len(idx) < 2:
        return None, None
    last = idx[-1]
    bwt = [R[last][j] - R[j][j] for j in idx[:-1] if R[last][j] is not None]
    fg = []
    for j in idx[:-1]:
        prev = [R[l_][j] for l_ in idx if j <= l_ < last and R[l_][j] is not None]
        if prev and R[last][j] is not None:
            fg.append(R[last][j] - min(prev))
    return (float(np.mean(bwt)) if bwt else None, float(np.mean(fg)) if fg else None)


def rolling(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` bars ignoring NaN; NaN until a quarter of the window is filled."""
    v = np.nan_to_num(x)
    c = np.concatenate([[0.0], np.cumsum(v)])
    n = np.concatenate([[0], np.cumsum(np.isfinite(x))])
    idx = np.arange(len(x))
    lo = np.maximum(0, idx + 1 - window)
    cnt = n[idx + 1] - n[lo]
    out = (c[idx + 1] - c[lo]) / np.maximum(cnt, 1)
    out[cnt < window // 4] = np.nan
    return out


def switch_dynamics(
    bar_err: np.ndarray, start: int, end: int, window: int = 168, peak_days: int = 30
) -> tuple[float | None, float | None]:
    """(peak rolling error in the first ``peak_days`` after a switch, hours until the rolling error is
    back within 10% of the regime's steady level — the median over its second half; None if never)."""
    roll = rolling(bar_err, window)
    seg = roll[start:end]
    if not np.isfinite(seg).any():
        return None, None
    steady = np.nanmedian(seg[len(seg) // 2 :])
    head = seg[: min(len(seg), peak_days * 24)]
    if not np.isfinite(head).any():
        return None, None
    k = int(np.nanargmax(head))
    peak = float(head[k])
    after = np.flatnonzero(np.isfinite(seg[k:]) & (seg[k:] <= 1.1 * steady))
    return peak, (float(k + after[0]) if after.size else None)


def forecast_quality(fp, preds: np.ndarray, cut: int) -> dict:
    """Error of forecasts ``preds`` (T, B, 3, volatility units) on the bars from ``cut`` on, beside the naive
    reference (zero returns; next day's variance = 24 x the slow hourly scale: "tomorrow looks like last week")."""
    from learner.protocol import HOURS_24, to_raw

    ok = fp.ymask.copy() & np.isfinite(preds)
    ok[:cut] = False
    raw = to_raw(np.nan_to_num(preds), fp.sigma)
    errs = per_bar(raw, fp.y, ok)
    naive = raw.copy()
    naive[..., :2] = 0.0
    naive[..., 2] = HOURS_24 * fp.sigma**2
    nerr = per_bar(naive, fp.y, ok)
    ic = rank_ic(raw[..., 1], fp.y[..., 1], ok[..., 1])
    rows = np.zeros(len(fp.times), dtype=bool)
    rows[cut:] = True
    return {"model": summarise(errs, ic, rows), "naive": summarise(nerr, np.zeros_like(ic), rows)}
