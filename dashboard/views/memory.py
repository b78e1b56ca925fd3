"""Memory: what the model's memories did over time, from each signal's ``activity`` record.

Hope writes per-level update norms (the Titans memory and each Continuum Memory System level), its
effective learning rates and its surprise. Fast levels should move every bar; slow levels in bursts at
their period. Keys are shown generically: whatever the model wrote is plotted.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboard.data import activity_long, empty_state, lake_root, signals

st.title("Memory activity")
sig = signals()
if sig is None or sig.is_empty():
    empty_state(
        f"No signals in the lake at `{lake_root()}` yet, so no memory activity to show.",
        ["continuum demo", "continuum learn ..."],
    )
    st.stop()

c1, c2, c3 = st.columns(3)
models = sorted(sig["model"].unique().to_list())
model = c1.selectbox("Model", models, index=models.index("hope") if "hope" in models else 0)
sig = sig.filter(pl.col("model") == model)
symbol = c2.selectbox("Asset", sorted(sig["symbol"].unique().to_list()))
days = c3.slider("Last days", min_value=1, max_value=730, value=60)
one = sig.filter(pl.col("symbol") == symbol).sort("time")
one = one.filter(pl.col("time") >= one["time"].max() - pl.duration(days=days))
act = activity_long(one)
if act.is_empty():
    st.info(f"The **{model}** signals carry no memory activity (their `activity` field is empty).")
    st.stop()

norms = act.filter(pl.col("key").str.contains("update_norm"))
others = act.filter(~pl.col("key").str.contains("update_norm"))
# a level that steps every C bars (a CMS level) is a point at each step, never a line drawn across the bars where
# it did nothing; a memory that writes on most bars (the Titans memory) is a line. Log scale: levels differ 10-100x.
norms = norms.with_columns(stepped=((pl.col("value") != 0).mean() < 0.5).over("key")).filter(pl.col("value") > 0)
st.caption(
    f"{one.height} bars of **{model}** on **{symbol}**, {one['time'].min():%Y-%m-%d} → {one['time'].max():%Y-%m-%d}. "
    "Update norms are the size of each memory level's weight change at that bar; a level that steps once per "
    "period (a day, a week, a month of bars) is a point at each step."
)
if not norms.is_empty():
    enc = {
        "x": alt.X("time:T", title=None),
        "y": alt.Y("value:Q", title="update norm", scale=alt.Scale(type="log")),
        "color": alt.Color(
            "key:N", title="level", scale=alt.Scale(domain=sorted(norms["key"].unique()), scheme="tableau10")
        ),
        "tooltip": ["time:T", "key:N", "value:Q"],
    }
    every_bar = alt.Chart(norms.filter(~pl.col("stepped")).drop("stepped")).mark_line(strokeWidth=1).encode(**enc)
    steps = alt.Chart(norms.filter(pl.col("stepped")).drop("stepped")).mark_circle(size=24, opacity=0.9).encode(**enc)
    st.altair_chart((every_bar + steps).properties(height=300, title="Per-level update norms"), width="stretch")
if not others.is_empty():
    chart = (
        alt.Chart(others)
        .mark_line(strokeWidth=1)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("key:N", legend=None),
            tooltip=["time:T", "key:N", "value:Q"],
        )
        .properties(height=140)
        .facet(row=alt.Row("key:N", title=None))
        .resolve_scale(y="independent")
    )
    st.altair_chart(chart)

summary = (
    act.group_by("key")
    .agg(
        pl.col("value").sort_by("time").last().alias("latest"),
        pl.col("value").mean().alias("mean"),
        pl.col("value").max().alias("max"),
        (pl.col("value") != 0).sum().alias("bars active"),
        (pl.col("value") != 0).mean().alias("share of bars active"),
    )
    .sort("key")
)
st.subheader("Summary")
st.dataframe(summary, hide_index=True, width="stretch")
