"""Signals: the latest forecast per asset with its uncertainty, lag, regime switches, alerts, forecasts over time.

Everything below the sidebar is one fragment that re-runs every ``refresh_seconds()`` (``continuum dashboard
--refresh``): it re-reads the lake (a cache hit unless a file changed) without reloading the page, so a running
learner's new signals, and new rows of the lake's ``alert`` table, show by themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from dashboard.data import activity_long, alerts, empty_state, lake_root, refresh_seconds, signals
from dashboard.formatting import duration

HOUR_MS = 3_600_000

st.title("Signals")
refresh = refresh_seconds()
sig0 = signals()
models = sorted(sig0["model"].unique().to_list()) if sig0 is not None and not sig0.is_empty() else []
model = st.sidebar.selectbox("Model", models, index=models.index("hope") if "hope" in models else 0) if models else None
st.sidebar.subheader("Alert thresholds")
z_thr = st.sidebar.number_input(
    "|24h forecast| / its std ≥", min_value=0.0, value=1.0, step=0.25, help="a confident directional call"
)
vol_thr = st.sidebar.number_input(
    "24h volatility forecast ≥ (%)", min_value=0.0, value=5.0, step=0.5, help="std-dev of the next-24h log return"
)


def bar_ms(sig: pl.DataFrame) -> int:
    """The bar length: the most common step between one asset's consecutive signals (an hour if unknown)."""
    steps = sig.select(pl.col("ts").sort().diff().over("symbol").alias("d")).filter(pl.col("d") > 0)
    return int(steps["d"].mode().min()) if steps.height else HOUR_MS


def lag_line(latest: pl.DataFrame, step_ms: int) -> None:
    """Latest bar, its lag behind now (bar close to now, in words and seconds), and when the lake was read."""
    last_ts = int(latest["ts"].max())
    now = datetime.now(UTC)
    lag_s = now.timestamp() - (last_ts + step_ms) / 1000
    c1, c2, c3, c4 = st.columns([3, 3, 1, 2])
    c1.metric("Latest bar (UTC)", f"{datetime.fromtimestamp(last_ts / 1000, UTC):%Y-%m-%d %H:%M}")
    c2.metric(
        "Lag",
        duration(lag_s),
        help="now minus the latest bar's close (its open time + one bar); a live feed stays under one bar",
    )
    c3.metric("Assets", latest.height)
    c4.metric("Read at (UTC)", f"{now:%H:%M:%S}")
    behind = "live: within one bar" if lag_s <= step_ms / 1000 else f"{lag_s / (step_ms / 1000):,.1f} bars behind"
    auto = f"re-read every {refresh:g} s" if refresh else "not refreshed automatically (--refresh 0)"
    st.caption(f"Lag {lag_s:,.0f} s ({behind}); this part of the page is {auto}.")


def latest_table(sig: pl.DataFrame) -> pl.DataFrame:
    # each asset's newest row (a filter, not a sort of the whole history: the page reruns every few seconds)
    latest = sig.filter(pl.col("ts") == pl.col("ts").max().over("symbol")).unique("symbol", keep="last").sort("symbol")
    for col, dtype in (("direction", pl.String), ("weight", pl.Float64), ("confidence", pl.Float64)):
        if col not in latest.columns:  # signals written before the feed's v2 fields (schema v1)
            latest = latest.with_columns(pl.lit(None, dtype).alias(col))
    return latest.with_columns((pl.col("ret_24h") / pl.col("vol_24h")).alias("z_24h")).with_columns(
        # the feed's side of the target weight; v1 rows have none, so the forecast's sign stands in
        pl.when(pl.col("direction").is_not_null() & (pl.col("direction") != ""))
        .then(pl.col("direction"))
        .otherwise(pl.when(pl.col("ret_24h") > 0).then(pl.lit("up")).otherwise(pl.lit("down")))
        .alias("side"),
        ((pl.col("z_24h").abs() >= z_thr) | (pl.col("vol_24h") * 100 >= vol_thr)).alias("alert"),
    )


def regime_switches(sig: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """The ``n`` newest bars where an asset's regime reading changed, newest first."""
    return (
        sig.select("symbol", "ts", "time", "regime")
        .sort("symbol", "ts")
        .with_columns(pl.col("regime").shift(1).over("symbol").alias("from"))
        .filter(pl.col("from").is_not_null() & (pl.col("from") != pl.col("regime")))
        .sort("ts", descending=True)
        .head(n)
        .select(pl.col("time").alias("bar (UTC)"), "symbol", "from", pl.col("regime").alias("to"))
    )


def alerts_panel() -> None:
    """The lake's ``alert`` table, newest first; nothing at all when no alert was ever written."""
    al = alerts()
    if al is None:
        return
    st.subheader("Alerts")
    st.caption(f"{al.height:,} alerts in the lake's `alert` table (`continuum alerts`), newest first.")
    st.dataframe(
        al.head(50).select(pl.col("time").alias("time (UTC)"), "severity", "rule", "symbol", "message"),
        hide_index=True,
        width="stretch",
        column_config={"time (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
    )


def forecasts_over_time(sig: pl.DataFrame, symbols: list[str]) -> None:
    st.subheader("Forecasts over time")
    c1, c2 = st.columns([1, 2])
    symbol = c1.selectbox("Asset", symbols, key="asset")
    days = c2.slider("Last days", min_value=1, max_value=365, value=30, key="days")
    one = sig.filter(pl.col("symbol") == symbol).sort("time")
    one = one.filter(pl.col("time") >= one["time"].max() - pl.duration(days=days)).with_columns(
        (pl.col("ret_24h") * 100).alias("ret_24h_pct"),
        ((pl.col("ret_24h") - pl.col("ret_24h_std")) * 100).alias("lo"),
        ((pl.col("ret_24h") + pl.col("ret_24h_std")) * 100).alias("hi"),
        (pl.col("vol_24h") * 100).alias("vol_24h_pct"),
    )
    base = alt.Chart(one).encode(x=alt.X("time:T", title=None))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("lo:Q", title="24h return forecast (%)"), y2="hi:Q")
    tips = ["time:T", "ret_24h_pct:Q", "lo:Q", "hi:Q", "regime:N"]
    line = base.mark_line().encode(y="ret_24h_pct:Q", tooltip=tips)
    st.altair_chart((band + line).properties(height=260, title=f"{symbol}: next-24h return, ± 1 std"), width="stretch")
    vol = base.mark_line(color="#d62728").encode(y=alt.Y("vol_24h_pct:Q", title="24h volatility forecast (%)"))
    st.altair_chart(vol.properties(height=180), width="stretch")
    # Hope's return calibration (learner/hope/calibration.py) writes its multiple into the activity: a flat-zero
    # return line is then the calibration holding the forecast at zero, not a broken model
    calib = activity_long(one.tail(1)).filter(pl.col("key") == "ret_calib_24h")
    if not calib.is_empty():
        st.caption(
            f"Return forecasts are calibrated online: the net's raw 24h forecast × {calib['value'][0]:.2f} at the "
            "last bar shown (0 until the released targets show skill; docs/signals.md)."
        )


@st.fragment(run_every=refresh or None)
def live() -> None:
    sig = signals()
    if sig is None or sig.is_empty():
        empty_state(
            f"No signals in the lake at `{lake_root()}` yet (this page looks again every {refresh:g} s).",
            [
                "continuum demo   # replays the bundled history through the learner and writes signals",
                "continuum learn ...",
            ],
        )
        return
    if model is None or model not in sig["model"].unique().to_list():
        st.rerun()  # the first signals (or a new model) since the page was built: the sidebar lists the models
    sig = sig.filter(pl.col("model") == model)
    step = bar_ms(sig)
    latest = latest_table(sig)
    lag_line(latest, step)
    st.caption(
        f"Model **{model}**. Forecasts are log returns; the 24h forecast's ± one std *is* the volatility forecast, "
        "so it has one column. Side, target weight (share of equity) and confidence come from the signal feed "
        "(docs/signals.md); rows written before the feed had them show the forecast's sign and no weight."
    )
    table = latest.select(
        "symbol",
        pl.col("time").alias("bar (UTC)"),
        "side",
        (pl.col("weight") * 100).alias("weight %"),
        (pl.col("confidence") * 100).alias("confidence %"),
        (pl.col("ret_1h") * 100).alias("1h %"),
        (pl.col("ret_1h_std") * 100).alias("± 1h %"),
        (pl.col("ret_24h") * 100).alias("24h %"),
        (pl.col("vol_24h") * 100).alias("vol 24h %"),
        pl.col("z_24h").alias("z 24h"),
        "regime",
        "alert",
    )
    pct = {c: st.column_config.NumberColumn(format="%.2f") for c in table.columns if c.endswith("%") or c == "z 24h"}
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"bar (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"), **pct},
    )
    hits = latest.filter(pl.col("alert"))
    if hits.is_empty():
        st.success("No asset crosses the alert thresholds at the latest bar.")
    for r in hits.iter_rows(named=True):
        why = []
        if abs(r["z_24h"]) >= z_thr:
            why.append(f"24h forecast {r['ret_24h'] * 100:+.2f}% is {abs(r['z_24h']):.2f} std from zero")
        if r["vol_24h"] * 100 >= vol_thr:
            why.append(f"24h volatility forecast {r['vol_24h'] * 100:.2f}%")
        st.warning(f"**{r['symbol']}** {r['side']}: " + "; ".join(why))

    alerts_panel()
    switches = regime_switches(sig)
    st.subheader("Regime switches")
    if switches.is_empty():
        st.caption("No asset's regime reading has changed yet.")
    else:
        st.caption("The newest bars where an asset's regime reading (calm / normal / volatile) changed.")
        st.dataframe(
            switches,
            hide_index=True,
            width="stretch",
            column_config={"bar (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
        )
    forecasts_over_time(sig, latest["symbol"].to_list())


live()
