"""The one-page tearsheet of a backtest: ``tearsheet.png``, and the series the dashboard draws the same way.

Top to bottom, on one time axis with the market regimes shaded: equity on a log scale (a strategy that lost
90% keeps its shape beside one that gained 1,000%), drawdown from the running peak, rolling Sharpe ratio,
turnover per day and cumulative costs; then a table of every strategy in total and per regime. The layout
follows the tearsheets desks know (pyfolio, quantstats), for several strategies at once.

:func:`series` computes every curve from ``equity.parquet`` (polars); :func:`figure` draws them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from learner.evaluation.regimes import Regime
from strategies.metrics import BARS_PER_YEAR
from strategies.report import fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TURNOVER_DAYS = 7  # turnover per day, averaged over a week: hourly trades are too spiky to read
TABLE = (  # key, header: the per-regime table of the tearsheet
    ("return", "return"),
    ("cagr", "CAGR"),
    ("sharpe", "Sharpe"),
    ("sharpe_ci", "95% CI"),
    ("sortino", "Sortino"),
    ("calmar", "Calmar"),
    ("max_drawdown", "max DD"),
    ("turnover", "turnover/d"),
    ("costs", "costs"),
    ("psr", "PSR"),
    ("dsr", "DSR"),
)


def rolling_days(n_bars: int) -> int:
    """Rolling-Sharpe window: 90 days, or 30 for a run shorter than 180 days (so the curve has a body)."""
    return 90 if n_bars >= 180 * 24 else 30


def series(equity: pl.DataFrame, window_days: int | None = None) -> pl.DataFrame:
    """Per strategy and mark time: ``drawdown`` (<= 0), ``rolling_sharpe`` (annualised, over ``window_days``),
    and, where ``equity`` has the columns, ``turnover_day`` (a week's mean) and ``cum_cost`` (fractions).

    ``equity`` is ``equity.parquet``: ``ts`` (ms), ``strategy``, ``equity`` and, since the tearsheet,
    ``turnover`` and ``cost`` of the trade at the close of ``ts``. The rolling Sharpe needs a full window.
    """
    per = equity.group_by("strategy").len()["len"].max() if equity.height else 0
    w = 24 * (window_days or rolling_days(int(per or 0)))
    net = (pl.col("equity") / pl.col("equity").shift(1) - 1.0).over("strategy", order_by="ts")
    out = equity.sort("strategy", "ts", maintain_order=True).with_columns(net=net)
    cols = [
        (pl.col("equity") / pl.col("equity").cum_max() - 1.0).over("strategy", order_by="ts").alias("drawdown"),
        (
            pl.col("net").rolling_mean(w, min_samples=w)
            / pl.col("net").rolling_std(w, min_samples=w)
            * math.sqrt(BARS_PER_YEAR)
        )
        .over("strategy", order_by="ts")
        .alias("rolling_sharpe"),
    ]
    if "turnover" in equity.columns:
        week = 24 * TURNOVER_DAYS
        cols.append(
            (pl.col("turnover").rolling_mean(week, min_samples=week) * 24)
            .over("strategy", order_by="ts")
            .alias("turnover_day")
        )
    if "cost" in equity.columns:
        cols.append(pl.col("cost").cum_sum().over("strategy", order_by="ts").alias("cum_cost"))
    return out.with_columns(cols).with_columns(pl.col("rolling_sharpe").fill_nan(None))


def _bands(ax, regimes: tuple[Regime, ...], t0, t1, label: bool) -> None:
    """Shade each regime over [t0, t1]; on the top panel name it, horizontally where it has room."""
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("Pastel1").colors
    span = (t1 - t0).astype("int64")
    for i, r in enumerate(regimes):
        a = np.datetime64(int(r.start.timestamp() * 1000), "ms")
        b = np.datetime64(int(r.end.timestamp() * 1000), "ms")
        if b <= t0 or a >= t1:
            continue
        a, b = max(a, t0), min(b, t1)
        ax.axvspan(a, b, color=colours[i % len(colours)], alpha=0.35, lw=0, zorder=0)
        if label:
            wide = (b - a).astype("int64") / span > 0.12
            mid = a + (b - a) / 2
            ax.text(
                mid if wide else a,
                0.98,
                r.name if wide else " " + r.name,
                transform=ax.get_xaxis_transform(),
                ha="center" if wide else "left",
                va="top",
                fontsize=8,
                rotation=0 if wide else 90,
                color="#444444",
            )


def _subtitle(doc: dict) -> str:
    """Range and costs, so a tearsheet read on its own says what it is."""
    rng, a = doc.get("range", {}), doc.get("assumptions", {})
    parts = []
    if rng.get("start") and rng.get("end"):
        parts.append(f"{rng['start'][:10]} → {rng['end'][:10]}")
    if "fee_bps" in a:
        parts.append(f"fees {a['fee_bps']:g} + slippage {a.get('slippage_bps', 0):g} bps")
    if doc.get("trials"):
        parts.append(f"DSR counts {doc['trials']['n']} trials")
    return " · ".join(parts)


def _table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    head = ["strategy", "stretch", *(h for _, h in TABLE)]
    rows = []
    for name, s in doc.get("strategies", {}).items():
        stretches = {"total": s.get("total", {}), **s.get("per_regime", {})}
        for i, (stretch, m) in enumerate(stretches.items()):
            rows.append([name if i == 0 else "", stretch, *(fmt(k, m.get(k)) for k, _ in TABLE)])
    return head, rows


def figure(doc: dict, equity: pl.DataFrame, regimes: tuple[Regime, ...], title: str = "") -> Figure:
    """The tearsheet as a matplotlib figure (the caller closes it): five time panels and the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

    s = series(equity)
    names = list(dict.fromkeys(equity["strategy"].to_list()))  # the run's order: the benchmark first
    colour = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    head, rows = _table_rows(doc)
    panels = [("equity", 3.2), ("drawdown", 1.5), ("rolling_sharpe", 1.5)]
    panels += [(c, 1.3) for c in ("turnover_day", "cum_cost") if c in s.columns]
    table_h = 0.24 * (len(rows) + 1) + 0.3
    fig = plt.figure(figsize=(13, sum(h for _, h in panels) + table_h + 1.2))
    gs = fig.add_gridspec(len(panels) + 1, 1, height_ratios=[h for _, h in panels] + [table_h], hspace=0.12)
    axes = [fig.add_subplot(gs[0])]
    axes += [fig.add_subplot(gs[i], sharex=axes[0]) for i in range(1, len(panels))]
    ts = s["ts"].to_numpy().astype("datetime64[ms]")
    t0, t1 = ts.min(), ts.max()
    window = rolling_days(int(s.group_by("strategy").len()["len"].max()))
    labels = {
        "equity": "equity (start = 1, log)",
        "drawdown": "drawdown",
        "rolling_sharpe": f"Sharpe, rolling {window} d",
        "turnover_day": f"turnover / day\n({TURNOVER_DAYS}-day mean)",
        "cum_cost": "costs paid\n(cumulative)",
    }
    for ax, (col, _) in zip(axes, panels, strict=True):
        _bands(ax, regimes, t0, t1, label=col == "equity")
        for n in names:
            part = s.filter(pl.col("strategy") == n)
            x = part["ts"].to_numpy().astype("datetime64[ms]")
            y = part[col].to_numpy().astype(float)
            if col == "equity":
                y = np.where(y > 0, y, np.nan)  # a wiped-out account has no place on a log axis
            ax.plot(x, y, lw=1.0, color=colour[n], label=n)
        ax.set_ylabel(labels[col], fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="y", lw=0.4, alpha=0.6)
        if col != panels[-1][0]:
            ax.tick_params(labelbottom=False)
    axes[0].set_yscale("log")
    axes[0].axhline(1.0, color="grey", lw=0.6, ls="--")
    lo, hi = axes[0].get_ylim()
    decades = math.log10(hi / lo) if lo > 0 else 10.0
    subs = (
        (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
        if decades <= 1
        else (1.0, 2.0, 5.0)
        if decades <= 3
        else (1.0,)
    )
    axes[0].yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2: not 2 x 10^0
    axes[0].yaxis.set_minor_formatter(NullFormatter())
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes[2].axhline(0.0, color="grey", lw=0.6)
    for ax, (col, _) in zip(axes, panels, strict=True):
        if col == "cum_cost":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    axes[0].set_xlim(t0, t1)
    axes[0].legend(
        loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(names), fontsize=9, frameon=False, borderaxespad=0.3
    )
    fig.suptitle(f"{title or 'Backtest tearsheet'}   {_subtitle(doc)}", fontsize=12, x=0.01, ha="left")
    tax = fig.add_subplot(gs[-1])
    tax.axis("off")
    if rows:
        tab = tax.table(cellText=rows, colLabels=head, loc="upper center", cellLoc="right", colLoc="right")
        tab.auto_set_font_size(False)
        tab.set_fontsize(8)
        tab.auto_set_column_width(list(range(len(head))))
        for (r, c), cell in tab.get_celld().items():
            cell.set_linewidth(0.3)
            cell.set_height(1.0 / (len(rows) + 1))
            if c < 2:
                cell.get_text().set_ha("left")
            if r == 0:
                cell.set_text_props(weight="bold")
                cell.set_facecolor("#eeeeee")
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.7 / fig.get_figheight(), bottom=0.02)
    return fig


def write_tearsheet(doc: dict, equity: pl.DataFrame, regimes: tuple[Regime, ...], path: Path, title: str = "") -> None:
    """``tearsheet.png``: :func:`figure` saved at 100 dpi."""
    import matplotlib.pyplot as plt

    fig = figure(doc, equity, regimes, title)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
