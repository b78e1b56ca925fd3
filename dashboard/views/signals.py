"""Signals: the latest forecast per asset with its uncertainty, alert thresholds, forecasts over time."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboard.data import empty_state, lake_root, signals

st.title("Signals")
sig = signals()
if sig is None or sig.is_empty():
    empty_state(
        f"No signals in the lake at `{lake_root()}` yet.",
        [
            "continuum demo   # replays the bundled history through the learner and writes signals",
            "continuum learn ...",
        ],
    )
    st.stop()

models = sorted(sig["model"].unique().to_list())
model = st.sidebar.selectbox("Model", models, index=models.index("hope") if "hope" in models else 0)
sig = sig.filter(pl.col("model") == model)
st.sidebar.subheader("Alert thresholds")
z_thr = st.sidebar.number_input(
    "|24h forecast| / its std ≥", min_value=0.0, value=1.0, step=0.25, help="a confident directional call"
)
vol_thr = st.sidebar.number_input(
    "24h volatility forecast ≥ (%)", min_value=0.0, value=5.0, step=0.5, help="std-dev of the next-24h log return"
)

latest = sig.sort("ts").group_by("symbol").last().sort("symbol")
for col, dtype in (("direction", pl.String), ("weight", pl.Float64), ("confidence", pl.Float64)):
    if col not in latest.columns:  # signals written before the feed's v2 fields (schema v1)
        latest = latest.with_columns(pl.lit(None, dtype).alias(col))
latest = latest.with_columns((pl.col("ret_24h") / pl.col("vol_24h")).alias("z_24h")).with_columns(
    # the feed's side of the target weight; v1 rows have none, so the forecast's sign stands in
    pl.when(pl.col("direction").is_not_null() & (pl.col("direction") != ""))
    .then(pl.col("direction"))
    .otherwise(pl.when(pl.col("ret_24h") > 0).then(pl.lit("up")).otherwise(pl.lit("down")))
    .alias("side"),
    ((pl.col("z_24h").abs() >= z_thr) | (pl.col("vol_24h") * 100 >= vol_thr)).alias("alert"),
)
as_of = latest["time"].max()
st.caption(
    f"Model **{model}** — latest bar {as_of:%Y-%m-%d %H:%M} UTC. Forecasts are log returns; the 24h forecast's "
    "± one std *is* the volatility forecast, so it has one column. Side, target weight (share of equity) and "
    "confidence come from the signal feed (docs/signals.md); rows written before the feed "
    "had them show the forecast's sign and no weight."
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
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={"bar (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
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

st.subheader("Forecasts over time")
c1, c2 = st.columns([1, 2])
symbol = c1.selectbox("Asset", latest["symbol"].to_list())
days = c2.slider("Last days", min_value=1, max_value=365, value=30)
one = sig.filter(pl.col("symbol") == symbol).sort("time")
one = one.filter(pl.col("time") >= one["time"].max() - pl.duration(days=days)).with_columns(
    (pl.col("ret_24h") * 100).alias("ret_24h_pct"),
    ((pl.col("ret_24h") - pl.col("ret_24h_std")) * 100).alias("lo"),
    ((pl.col("ret_24h") + pl.col("ret_24h_std")) * 100).alias("hi"),
    (pl.col("vol_24h") * 100).alias("vol_24h_pct"),
)
base = alt.Chart(one).encode(x=alt.X("time:T", title=None))
band = base.mark_area(opacity=0.25).encode(y=alt.Y("lo:Q", title="24h return forecast (%)"), y2="hi:Q")
line = base.mark_line().encode(y="ret_24h_pct:Q", tooltip=["time:T", "ret_24h_pct:Q", "lo:Q", "hi:Q", "regime:N"])
st.altair_chart((band + line).properties(height=260, title=f"{symbol}: next-24h return, ± 1 std"), width="stretch")
vol = base.mark_line(color="#d62728").encode(y=alt.Y("vol_24h_pct:Q", title="24h volatility forecast (%)"))
st.altair_chart(vol.properties(height=180), width="stretch")
