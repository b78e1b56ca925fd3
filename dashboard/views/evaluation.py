"""Backtests & evaluation: equity curves, per-regime tables, forgetting (R matrix), cumulative error."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboard.data import backtest, backtest_dir, empty_state, eval_dir, evaluation, regimes_frame, tearsheet
from dashboard.formatting import metric_frame

st.title("Backtests & evaluation")
ev, errors = evaluation()
bt, equity = backtest()
regimes = regimes_frame(ev)
bt_regimes = regimes_frame(bt) if bt and bt.get("regimes") else regimes


def bands(frame: pl.DataFrame | None, t0, t1, legend: bool = True) -> alt.Chart | None:
    """Shaded regime bands clipped to [t0, t1], so any time chart reads against the market regimes."""
    if frame is None:
        return None
    f = frame.filter((pl.col("end") > t0) & (pl.col("start") < t1)).with_columns(
        pl.col("start").clip(lower_bound=t0), pl.col("end").clip(upper_bound=t1)
    )
    return (
        alt.Chart(f)
        .mark_rect(opacity=0.12)
        .encode(
            x="start:T",
            x2="end:T",
            color=alt.Color("name:N", title="regime", legend=alt.Legend() if legend else None),
            tooltip=["name:N"],
        )
    )


def time_chart(frame: pl.DataFrame, col: str, title: str, axis: str, fmt: str, height: int = 180, zero: bool = False):
    """One tearsheet panel: ``col`` per strategy over time, on the regime bands; ``fmt`` a d3 axis format."""
    f = frame.select("time", "strategy", col)  # nulls (a rolling window not yet full) leave the x axis as it is
    line = (
        alt.Chart(f)
        .mark_line(strokeWidth=1)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y(f"{col}:Q", title=axis, axis=alt.Axis(format=fmt)),
            color=alt.Color("strategy:N", legend=None),  # the colours of the equity chart's legend above
            tooltip=["time:T", "strategy:N", alt.Tooltip(f"{col}:Q", format=fmt)],
        )
    )
    if zero:
        line = line + alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="grey", size=0.6).encode(y="y:Q")
    b = bands(bt_regimes, f["time"].min(), f["time"].max(), legend=False) if f.height else None
    chart = (b + line).resolve_scale(color="independent") if b is not None else line
    return chart.properties(height=height, title=title)


def metric_table(d: dict, index_name: str) -> pl.DataFrame:
    return pl.DataFrame([{index_name: k, **v} for k, v in d.items()])


tab_bt, tab_ev = st.tabs(["Backtest", "Evaluation"])
with tab_bt:
    if bt is None and equity is None:
        empty_state(
            f"No backtest in `{backtest_dir()}`.",
            ["continuum demo", f"continuum backtest --data data/binance --out {backtest_dir()}"],
        )
    else:
        if equity is not None and not equity.is_empty():
            equity = equity.filter(pl.col("equity") > 0)  # a log axis has no place for a wiped-out account
            # log scale: a losing strategy keeps its shape instead of lying flat at zero beside a winner
            line = (
                alt.Chart(equity)
                .mark_line()
                .encode(
                    x=alt.X("time:T", title=None),
                    y=alt.Y("equity:Q", title="equity (start = 1, log scale)", scale=alt.Scale(type="log")),
                    color=alt.Color("strategy:N"),
                    tooltip=["time:T", "strategy:N", "equity:Q"],
                )
            )
            b = bands(bt_regimes, equity["time"].min(), equity["time"].max())
            st.altair_chart(
                ((b + line).resolve_scale(color="independent") if b is not None else line).properties(
                    height=340, title="Equity curves"
                ),
                width="stretch",
            )
        curves = tearsheet()
        if curves is not None and not curves.is_empty():
            from strategies.tearsheet import TURNOVER_DAYS, rolling_days

            days = rolling_days(int(equity.group_by("strategy").len()["len"].max())) if equity is not None else 90
            st.altair_chart(
                time_chart(curves, "drawdown", "Drawdown from the running peak", "drawdown", ".0%"), width="stretch"
            )
            st.altair_chart(
                time_chart(curves, "rolling_sharpe", f"Sharpe ratio, rolling {days} days", "Sharpe", ".1f", zero=True),
                width="stretch",
            )
            left, right = st.columns(2)
            if "turnover_day" in curves.columns:
                with left:
                    st.altair_chart(
                        time_chart(
                            curves,
                            "turnover_day",
                            f"Turnover per day ({TURNOVER_DAYS}-day mean)",
                            "turnover / day",
                            ".2f",
                        ),
                        width="stretch",
                    )
            if "cum_cost" in curves.columns:
                with right:
                    st.altair_chart(
                        time_chart(curves, "cum_cost", "Costs paid (cumulative)", "costs", ".0%"), width="stretch"
                    )
        if bt:
            strategies = bt.get("strategies", {})
            st.subheader("Totals")
            st.dataframe(metric_frame({k: v["total"] for k, v in strategies.items()}, "strategy"), hide_index=True)
            trials = bt.get("trials")
            if trials:
                tot = trials.get("total", {})
                declared = f" (--trials {trials['declared']})" if trials.get("declared") else ""
                st.caption(
                    f"PSR: probability that the true Sharpe ratio is above 0. DSR: the same against "
                    f"{tot.get('expected_max_sharpe', float('nan')):.2f}, the Sharpe the best of {trials['n']} "
                    f"trials{declared} would show by luck (Bailey & López de Prado 2014). Count every variant "
                    "you tried, also in earlier runs: `continuum backtest --trials N`. Sharpe 95% CI: stationary "
                    "bootstrap of the hourly returns, mean block one week."
                )
            st.subheader("Per regime")
            st.caption(
                "Each regime on its own bars; annualised figures (CAGR, Sharpe, Sortino, Calmar) and PSR/DSR "
                "are — under 30 days."
            )
            strat = st.selectbox("Strategy", list(strategies))
            per = strategies[strat].get("per_regime", {})
            if per:
                st.dataframe(metric_frame(per, "regime"), hide_index=True)

with tab_ev:
    if ev is None:
        empty_state(
            f"No evaluation in `{eval_dir()}`.",
            ["continuum demo", f"continuum evaluate --data data/binance --out {eval_dir()}"],
        )
        st.stop()
    data = ev.get("data", {})
    st.caption(
        f"Assets {', '.join(data.get('symbols', []))}; {data.get('start', '?')} → {data.get('end', '?')}; "
        f"pre-trained until {data.get('pretrain_until', '—')}. "
        "Prequential: predict, then learn when the target is seen."
    )
    models = ev.get("models", {})
    # `continuum demo` writes its naive reference (zero return, last week's volatility) beside the model
    rows = {**models, **{f"{k} (reference)": v for k, v in ev.get("reference", {}).items()}}
    st.subheader("Cumulative error")
    st.dataframe(metric_table({m: v["cumulative"] for m, v in rows.items()}, "model"), hide_index=True)

    if errors is not None and not errors.is_empty():
        metric = st.radio("Error", ["vol_24h_qlike", "ret_1h_se"], horizontal=True)
        cum = errors.sort("ts").with_columns(
            (pl.col(metric).cum_sum() / pl.col(metric).cum_count()).over("model").alias("cumulative")
        )
        line = (
            alt.Chart(cum)
            .mark_line()
            .encode(
                x=alt.X("time:T", title=None),
                y=alt.Y("cumulative:Q", title=f"cumulative mean {metric}"),
                strokeDash=alt.StrokeDash("model:N"),
                tooltip=["time:T", "model:N", "cumulative:Q"],
            )
        )
        b = bands(regimes, cum["time"].min(), cum["time"].max())
        st.altair_chart(
            ((b + line).resolve_scale(color="independent") if b is not None else line).properties(height=320),
            width="stretch",
        )

    st.subheader("Per regime")
    keys = list(next(iter(models.values()))["cumulative"]) if models else []
    m = st.selectbox("Metric", keys)
    per = pl.DataFrame(
        [{"model": name, **{r: v[m] for r, v in mv.get("per_regime", {}).items()}} for name, mv in rows.items()]
    )
    st.dataframe(per, hide_index=True)

    st.subheader("Forgetting: R matrix")
    st.caption("R[i][j]: error on regime j's held-out weeks after streaming through regime i (lower is better).")
    names = [r["name"] for r in ev.get("regimes", [])]
    if not any((mv.get("forgetting") or {}).get("R") for mv in models.values()):
        empty_state(
            "No R matrix here: this run streamed every bar and held no weeks out to score after each regime "
            "(`continuum demo` writes it so).",
            [f"continuum evaluate --data data/binance --out {eval_dir()}"],
        )
    cols = st.columns(min(3, max(1, len(models))))
    for i, (name, mv) in enumerate(models.items()):
        f = mv.get("forgetting")
        if not f or not f.get("R"):
            continue
        R = f["R"]
        cells = pl.DataFrame(
            [
                {"after": names[a] if a < len(names) else str(a), "on": names[b] if b < len(names) else str(b), "v": v}
                for a, row in enumerate(R)
                for b, v in enumerate(row)
                if v is not None
            ]
        )
        order = names[: len(R)]
        heat = alt.Chart(cells).encode(
            x=alt.X("on:N", sort=order, title="scored on"), y=alt.Y("after:N", sort=order, title="after")
        )
        chart = heat.mark_rect().encode(color=alt.Color("v:Q", title=f["metric"])) + heat.mark_text(fontSize=10).encode(
            text=alt.Text("v:Q", format=".3g")
        )
        with cols[i % len(cols)]:
            st.altair_chart(chart.properties(height=240, title=name), width="stretch")
            st.caption(
                f"BWT {f.get('bwt', float('nan')):.4g} · avg forgetting {f.get('avg_forgetting', float('nan')):.4g}"
            )

    sw = [{"model": n, **s} for n, mv in rows.items() for s in mv.get("switches", [])]
    if sw:
        st.subheader("Regime switches")
        st.caption("Peak error after each switch and hours until the rolling error is back within 10% of steady level.")
        st.dataframe(pl.DataFrame(sw), hide_index=True)
    speed = {n: mv.get("steps_per_s") for n, mv in models.items() if mv.get("steps_per_s") is not None}
    if speed:
        st.caption("Throughput (steps/s): " + ", ".join(f"{n} {v:,.0f}" for n, v in speed.items()))
