"""What a backtest leaves for people: terminal tables, ``report.md`` and ``equity.png`` with regime bands.

(``tearsheet.png``, the one-page figure, is :mod:`strategies.tearsheet`.)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from learner.evaluation.regimes import Regime

FORMATS = {  # key in backtest.json: (header, format); fractions print as percentages
    "return": ("return", "{:+,.1%}"),
    "gross_return": ("pre-cost", "{:+,.1%}"),
    "cagr": ("CAGR", "{:+,.1%}"),
    "sharpe": ("Sharpe", "{:+.2f}"),
    "sortino": ("Sortino", "{:+.2f}"),
    "calmar": ("Calmar", "{:+.2f}"),
    "max_drawdown": ("max DD", "{:.1%}"),
    "hit_rate": ("hit rate", "{:.1%}"),
    "turnover": ("turnover/d", "{:.2f}"),
    "exposure": ("exposure", "{:.0%}"),
    "costs": ("costs", "{:,.1%}"),
    "psr": ("PSR", "{:.2f}"),
    "dsr": ("DSR", "{:.2f}"),
    "sharpe_ci": ("95% CI", "[{:+.2f}, {:+.2f}]"),
    "skew": ("skew", "{:+.2f}"),
    "kurtosis": ("kurtosis", "{:.1f}"),
    "bars": ("bars", "{:,d}"),
}
# the terminal and report.md tables: performance (totals and per regime), then the odds that a Sharpe is luck
COLUMNS = tuple(
    (k, *FORMATS[k])
    for k in (
        "return", "gross_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "turnover", "costs",
        "psr", "dsr", "bars",
    )
)  # fmt: skip
ODDS_COLUMNS = tuple((k, *FORMATS[k]) for k in ("sharpe", "sharpe_ci", "psr", "dsr", "skew", "kurtosis", "bars"))


def fmt(key: str, v) -> str:
    """One figure as the reports print it (``FORMATS``)."""
    return _fmt(v, FORMATS[key][1] if key in FORMATS else "{}")


def _fmt(v, f: str) -> str:
    """One cell; "—" where there is no figure (None: e.g. an annualised one for a stretch under 30 days)."""
    if v is None:
        return "—"
    return f.format(*v) if isinstance(v, list | tuple) else f.format(v)


def table(rows: dict[str, dict], index: str, columns: tuple = COLUMNS) -> str:
    """A fixed-width text table (freqtrade style): one row per key of ``rows``, the metric columns."""
    head = [index, *(h for _, h, _ in columns)]
    body = [[name, *(_fmt(r.get(k), f) for k, _, f in columns)] for name, r in rows.items()]
    widths = [max(len(str(c[i])) for c in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        cols = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(cols) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def trials_line(doc: dict) -> str:
    """One sentence on how many trials the deflated Sharpe ratio counts and what luck alone would show."""
    t = doc.get("trials")
    if not t:
        return ""
    tot = t.get("total", {})
    declared = f" (--trials {t['declared']})" if t.get("declared") else ""
    return (
        f"DSR counts {t['n']} trials{declared}, {t['in_run']} in this run: the best of them would show a Sharpe "
        f"of {fmt('sharpe', tot.get('expected_max_sharpe'))} by luck alone (Sharpe std across trials "
        f"{_fmt(tot.get('sharpe_std'), '{:.2f}')}). Count every variant you tried, also in earlier runs."
    )


def write_report(doc: dict, path: Path, command: str, wall_s: float) -> str:
    """``report.md``; returns the terminal part (the totals and the per-regime tables)."""
    strategies = doc["strategies"]
    rng = doc.get("range", {})
    totals = table({k: v["total"] for k, v in strategies.items()}, "strategy")
    odds = table({k: v["total"] for k, v in strategies.items()}, "strategy", ODDS_COLUMNS)
    trials = trials_line(doc)
    regimes = "\n\n".join(
        f"{name}\n{table(v['per_regime'], 'regime')}" for name, v in strategies.items() if v.get("per_regime")
    )
    notes = "".join(f"\nnote: {n}" for n in doc.get("notes", []))
    terminal = (
        f"TOTAL ({rng.get('start', '?')} .. {rng.get('end', '?')})\n{totals}{notes}\n\n"
        f"IS THE SHARPE RATIO LUCK?\n{odds}\n{trials}\n\nPER REGIME\n{regimes}"
    )
    a = doc.get("assumptions", {})
    lines = [
        "# Backtest",
        "",
        f"`{command}` ({wall_s:.0f} s)",
        "",
        f"Assets {', '.join(rng.get('symbols', []))}; {rng.get('start', '?')} → {rng.get('end', '?')}.",
        f"Forecasts: {doc.get('source', doc.get('model', '?'))}.",
        "",
        "## Totals",
        "",
        "```",
        totals,
        "```",
        *(f"\n**Note:** {n}." for n in doc.get("notes", [])),
        "",
        "## Is the Sharpe ratio luck?",
        "",
        "PSR: probability that the true Sharpe ratio is above 0, given the skew and fat tails of the hourly",
        "returns. DSR: the same against the Sharpe ratio the best of all trials would reach by luck (Bailey &",
        "López de Prado 2014). 95% CI: stationary block bootstrap of the hourly returns (mean block one week).",
        "",
        "```",
        odds,
        "```",
        "",
        trials,
        "",
        "## Per regime",
        "",
        "Each regime's row is computed on its own bars, equity rebased to 1 at its start; annualised figures",
        "(CAGR, Sharpe, Sortino, Calmar) and PSR/DSR are — for a stretch shorter than 30 days.",
        "",
        "```",
        regimes,
        "```",
        "",
        "## Strategies",
        "",
        *(f"- `{k}`: {v.get('description', '')}" for k, v in strategies.items()),
        "",
        "## Assumptions",
        "",
        *(f"- {k.replace('_', ' ')}: {v}" for k, v in a.items()),
        "",
        "![tearsheet](tearsheet.png)",
        "",
        "![equity](equity.png)",
        "",
    ]
    path.write_text("\n".join(lines))
    return terminal


def equity_figure(equity: pl.DataFrame, regimes: tuple[Regime, ...], title: str = ""):
    """The matplotlib figure of :func:`write_plot`: equity curves on a log axis over shaded regime bands.

    Log scale, so that a losing strategy's curve keeps its shape instead of lying flat near zero beside a
    winner's; the caller closes the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(12, 5))
    t0 = t1 = None
    for name, part in equity.group_by("strategy", maintain_order=True):
        ts = part["ts"].to_numpy().astype("datetime64[ms]")
        t0 = ts[0] if t0 is None else min(t0, ts[0])
        t1 = ts[-1] if t1 is None else max(t1, ts[-1])
        ax.plot(ts, part["equity"].to_numpy(), lw=1.1, label=name[0] if isinstance(name, tuple) else name)
    colours = plt.get_cmap("Pastel1").colors
    for i, r in enumerate(regimes):
        a = np.datetime64(int(r.start.timestamp() * 1000), "ms")
        b = np.datetime64(int(r.end.timestamp() * 1000), "ms")
        if t0 is None or b <= t0 or a >= t1:
            continue
        a, b = max(a, t0), min(b, t1)
        ax.axvspan(a, b, color=colours[i % len(colours)], alpha=0.5, lw=0)
        ax.text(a, 1.0, " " + r.name, transform=ax.get_xaxis_transform(), va="top", fontsize=7, rotation=90)
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.6, ls="--")
    ax.set_ylabel("equity (start = 1, log scale)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.set_title(title or "Equity curves")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # clear of the bands
    fig.tight_layout()
    return fig


def write_plot(equity: pl.DataFrame, regimes: tuple[Regime, ...], path: Path, title: str = "") -> None:
    """``equity.png``: equity curves (log scale) over shaded, labelled regime bands."""
    import matplotlib.pyplot as plt

    fig = equity_figure(equity, regimes, title)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
