"""Terminal tables for forensics results: short addresses with their labels, compact amounts, "—" for unknowns,
and a width budget (120 columns by default) the table is fitted into.

``json`` and ``csv`` output keep every column whole; these tables are for reading. Each view names its columns
as :class:`Col` (title, how to render a row, widest and narrowest width); :func:`render` shrinks the shrinkable
columns (labels, addresses) until the row fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from forensics.addresses import short

NONE = "—"


def who(address: str | None, label: str | None) -> str:
    """``0x64a0…c5ad (Binance 14)``, or the short address alone when unlabelled."""
    return short(address) + (f" ({label})" if label else "")


def amount(v: float | None) -> str:
    """``7.4``, ``12,345.7``, ``1.52M``, ``151.6B``, ``1.5e+29``; ``—`` when unknown."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NONE
    a = abs(v)
    if a >= 1e15:
        return f"{v:.2g}"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if a >= scale:
            return f"{v / scale:,.4g}{unit}"
    return f"{v:,.6g}" if a >= 1 else f"{v:.4g}"


def usd(v: float | None, partial: bool = False) -> str:
    """``$13.6k`` (USDT); ``≥$13.6k`` when some tokens in the sum had no price; ``—`` when none had."""
    if v is None:
        return NONE
    a = abs(v)
    s = (
        f"{v / 1e9:.3g}B"
        if a >= 1e9
        else f"{v / 1e6:.3g}M"
        if a >= 1e6
        else f"{v / 1e3:.3g}k"
        if a >= 1e3
        else f"{v:.2f}"
    )
    return ("≥$" if partial else "$") + s


def when(ms: int | None) -> str:
    return NONE if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Col:
    title: str
    cell: Callable[[dict], str]
    max: int
    min: int | None = None  # None: never shrunk below its widest cell (up to max)
    right: bool = False


def _cut(s: str, w: int) -> str:
    return s if len(s) <= w else s[: max(0, w - 1)] + "…"


def render(rows: list[dict], cols: list[Col], width: int = 120, sep: str = "  ") -> str:
    """The rows as a plain-text table no wider than ``width`` (shrinking columns that have a ``min``)."""
    cells = [[c.cell(r) or NONE for c in cols] for r in rows]
    widths = [min(c.max, max([len(c.title)] + [len(row[i]) for row in cells])) for i, c in enumerate(cols)]
    over = sum(widths) + len(sep) * (len(cols) - 1) - width
    for i in sorted(range(len(cols)), key=lambda i: -widths[i]):
        if over <= 0:
            break
        floor = cols[i].min
        if floor is not None and widths[i] > floor:
            take = min(over, widths[i] - floor)
            widths[i] -= take
            over -= take

    def line(values: list[str]) -> str:
        out = [
            _cut(v, w).rjust(w) if c.right else _cut(v, w).ljust(w)
            for v, w, c in zip(values, widths, cols, strict=True)
        ]
        return sep.join(out).rstrip()

    head = line([c.title for c in cols])
    rule = sep.join("-" * w for w in widths)
    return "\n".join([head, rule, *(line(r) for r in cells)])


def _side(r: dict, s: str) -> str:
    """One side of a node: ``7.4 ETH ($13.6k)``, ``3 tokens (≥$1.2k)``, or ``—`` when nothing moved."""
    n = r[f"count_{s}"]
    if not n:
        return NONE
    money = r[f"usd_{s}"]
    tail = f" ({usd(money, r[f'unpriced_{s}'] > 0)})" if money is not None else ""
    if r[f"token_{s}"] is not None:
        return f"{amount(r[f'value_{s}'])} {r[f'token_{s}']}{tail}"
    return f"{r[f'n_tokens_{s}']} tokens{tail}"


def _hop(r: dict) -> str:
    return "0" if r["side"] == "root" else f"{'-' if r['side'] == 'in' else '+'}{r['hop']}"


def _cat(r: dict) -> str:
    return (("!" if r.get("flagged") else "") + r["category"]) if r.get("category") else NONE


NODE_COLS = [
    Col("address", lambda r: who(r["address"], r["label"]), 40, 20),
    Col("hop", _hop, 3, right=True),
    Col("category", _cat, 11, 8),
    Col("in", lambda r: _side(r, "in"), 30, 16),
    Col("out", lambda r: _side(r, "out"), 30, 16),
    Col("risk on path", lambda r: ",".join(r["path_risk"] or []) or NONE, 20, 8),
]
EDGE_COLS = [
    Col("from", lambda r: who(r["source"], r.get("source_label")), 34, 14),
    Col("to", lambda r: who(r["target"], r.get("target_label")), 34, 14),
    Col("amount", lambda r: f"{amount(r['value'])} {r['token_label']}{' raw' if r['unit'] == 'raw' else ''}", 28, 14),
    Col("USDT", lambda r: usd(r["usd"]), 9, right=True),
    Col("n", lambda r: str(r["count"]), 5, right=True),
    Col("first", lambda r: when(r["first_ts"]), 16),
    Col("hop", lambda r: str(r["hop"]), 3, right=True),
]
COUNTERPARTY_COLS = [
    Col("#", lambda r: str(r["rank"]), 4, right=True),
    Col("counterparty", lambda r: who(r["counterparty"], r["label"]), 40, 18),
    Col("category", lambda r: r["category"] or NONE, 10, 6),
    Col("token", lambda r: r["token_label"] + (" raw" if r["unit"] == "raw" else ""), 16, 8),
    Col("in", lambda r: amount(r["value_in"]), 12, right=True),
    Col("out", lambda r: amount(r["value_out"]), 12, right=True),
    Col("n in/out", lambda r: f"{r['count_in']}/{r['count_out']}", 9, right=True),
    Col("first seen", lambda r: when(r["first_seen"]), 16, 10),
    Col("last seen", lambda r: when(r["last_seen"]), 16, 10),
]
ALERT_COLS = [
    Col("time", lambda r: when(r["ts"]), 16),
    Col("rule", lambda r: r["rule"], 16),
    Col("sev", lambda r: r["severity"], 6),
    Col("amount", lambda r: f"{amount(r['value'])} {r['token_label']}{' raw' if r['unit'] == 'raw' else ''}", 22, 12),
    Col("from", lambda r: who(r["from_address"], r["from_label"]), 32, 12),
    Col("to", lambda r: who(r["to_address"], r["to_label"]), 32, 12),
    Col("tx", lambda r: short(r["tx_hash"]), 11),
]


CLUSTER_COLS = [
    Col("cluster", lambda r: short(r["cluster_id"]), 24, 14),
    Col("label", lambda r: r["label"], 36, 14),
    Col("hot wallets", lambda r: str(r["hot_wallets"]), 11, right=True),
    Col("deposits", lambda r: str(r["deposits"]), 8, right=True),
    Col("senders", lambda r: str(r["senders"]), 7, right=True),
    Col("evidence", lambda r: str(r["evidence"]), 8, right=True),
    Col("first seen", lambda r: when(r["first_seen"]), 16, 10),
    Col("last seen", lambda r: when(r["last_seen"]), 16, 10),
]
MEMBER_COLS = [
    Col("address", lambda r: r["address"], 42, 14),
    Col("cluster", lambda r: r["cluster_label"], 34, 14),
    Col("role", lambda r: r["role"], 10),
    Col("n", lambda r: str(r["count"]), 5, right=True),
    Col("first seen", lambda r: when(r["first_seen"]), 16, 10),
    Col("via", lambda r: short(r["deposit"] or r["hot_wallet"]), 11),
]


def table(df: pl.DataFrame, cols: list[Col], width: int = 120) -> str:
    return render(df.to_dicts(), cols, width)
