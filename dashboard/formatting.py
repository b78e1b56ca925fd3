"""How the dashboard shows backtest figures: percentages as percentages, "—" where there is no figure.

``backtest.json`` holds fractions (14.93 is +1,493%) and null where a figure does not exist (an annualised
one for a stretch under 30 days, a Sharpe with no variance). The tables show them as text, formatted here.
"""

from __future__ import annotations

import math

import polars as pl

NONE = "—"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def pct(v, signed: bool = True) -> str:
    """A fraction as a percentage: ``pct(14.93)`` is "+1,493.0%"; "—" for None (or NaN)."""
    if _missing(v):
        return NONE
    return f"{v:+,.1%}" if signed else f"{v:,.1%}"


def num(v, digits: int = 2) -> str:
    """A plain number (Sharpe, turnover): ``num(1.234)`` is "1.23"; "—" for None (or NaN)."""
    if _missing(v):
        return NONE
    return f"{v:,.{digits}f}"


def count(v) -> str:
    return NONE if _missing(v) else f"{int(v):,d}"


def _plain(v) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return num(v)
    return NONE if v is None else str(v)


def interval(v) -> str:
    """A [low, high] pair: ``interval([0.12, 1.85])`` is "[+0.12, +1.85]"; "—" where there is none."""
    if v is None or len(v) != 2 or any(_missing(x) for x in v):
        return NONE
    return f"[{v[0]:+.2f}, {v[1]:+.2f}]"


METRICS = (  # key in backtest.json, column header, formatter
    ("return", "return", pct),
    ("gross_return", "pre-cost", pct),
    ("cagr", "CAGR", pct),
    ("sharpe", "Sharpe", num),
    ("sharpe_ci", "Sharpe 95% CI", interval),
    ("sortino", "Sortino", num),
    ("calmar", "Calmar", num),
    ("max_drawdown", "max DD", lambda v: pct(v, signed=False)),
    ("hit_rate", "hit rate", lambda v: pct(v, signed=False)),
    ("turnover", "turnover/d", num),
    ("annual_vol", "annual vol", lambda v: pct(v, signed=False)),
    ("exposure", "exposure", lambda v: pct(v, signed=False)),
    ("costs", "costs", lambda v: pct(v, signed=False)),
    ("psr", "PSR", num),
    ("dsr", "DSR", num),
    ("skew", "skew", num),
    ("kurtosis", "kurtosis", lambda v: num(v, 1)),
    ("bars", "bars", count),
)
ALIASES = {"annual_return": "cagr"}  # names in backtest.json files written before issue 13


def metric_frame(rows: dict[str, dict], index: str) -> pl.DataFrame:
    """One row per key of ``rows`` (strategies or regimes), the backtest metrics as formatted text.

    Known metrics come in a fixed order with their headers; a column is left out when no row has it;
    keys this module does not know are shown as plain numbers.
    """
    rows = {name: {ALIASES.get(k, k): v for k, v in r.items()} for name, r in rows.items()}
    present = {k for r in rows.values() for k in r}
    known = [(k, h, f) for k, h, f in METRICS if k in present]
    names = {k for k, _, _ in METRICS}
    extra = [k for k in dict.fromkeys(k for r in rows.values() for k in r) if k not in names]
    data = [
        {
            index: name,
            **{h: f(r.get(k)) for k, h, f in known},
            **{k: _plain(r.get(k)) for k in extra},
        }
        for name, r in rows.items()
    ]
    schema = {index: pl.String, **{h: pl.String for _, h, _ in known}, **{k: pl.String for k in extra}}
    return pl.DataFrame(data, schema=schema)


def duration(seconds: float) -> str:
    """A span in words, two units at most: ``duration(4_380)`` is "1 h 13 min"; "—" for None (or NaN)."""
    if _missing(seconds):
        return NONE
    s = int(round(abs(seconds)))
    sign = "-" if seconds < 0 and s else ""
    d, s = divmod(s, 86_400)
    h, s = divmod(s, 3_600)
    m, s = divmod(s, 60)
    parts = [(d, "d"), (h, "h"), (m, "min"), (s, "s")]
    first = next((i for i, (v, _) in enumerate(parts) if v), len(parts) - 1)
    shown = [f"{v:,d} {u}" for v, u in parts[first : first + 2] if v] or ["0 s"]
    return sign + " ".join(shown)
