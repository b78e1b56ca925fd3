"""Trace graphs as files an analyst can open or hand on: JSON (nodes + edges), Graphviz DOT, and a
self-contained HTML page (inline SVG, no scripts or network) laid out in columns by hop.

Colours follow the risk reading: red sanctioned/exploit, orange mixer/phishing, blue exchange,
green the traced root, grey unlabelled.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import polars as pl

from forensics.addresses import short
from forensics.queries import Trace

COLORS = {
    "sanctioned": "#d62728",
    "exploit": "#b71c1c",
    "mixer": "#ff7f0e",
    "phishing": "#e377c2",
    "exchange": "#1f77b4",
    "bridge": "#17becf",
    "dex": "#9467bd",
    "other": "#8c8c8c",
    None: "#c7c7c7",
}
ROOT_COLOR = "#2ca02c"


def node_title(row: dict) -> str:
    """``0x1234…abcd`` or ``Binance 14 (exchange)``: the label first, because that is what an analyst scans for."""
    if row.get("label"):
        return f"{row['label']} ({row['category']})"
    return short(row["address"])


def _color(row: dict, root: str) -> str:
    return ROOT_COLOR if row["address"] == root else COLORS.get(row.get("category"), COLORS[None])


def to_json(t: Trace) -> str:
    return json.dumps(
        {
            "root": t.root,
            "direction": t.direction,
            "hops": t.hops,
            "nodes": t.nodes.to_dicts(),
            "edges": t.edges.to_dicts(),
        },
        indent=1,
        default=str,
    )


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


def edge_widths(edges: pl.DataFrame, lo: float = 1.0, hi: float = 4.0) -> list[float]:
    """Line widths that compare like with like: by USDT value (log scale) when every edge is priced, else by
    the edge's rank among the edges of its own token (an unknown token's billions never outweigh 7 ETH)."""
    if edges.is_empty():
        return []
    if edges["usd"].null_count() == 0:
        top = math.log1p(max(edges["usd"].max() or 0.0, 0.0)) or 1.0
        return [lo + (hi - lo) * math.log1p(max(v, 0.0)) / top for v in edges["usd"].to_list()]
    ranked = edges.with_columns(
        (pl.col("value").rank("average").over("token_label") / pl.len().over("token_label")).alias("q")
    )
    return [lo + (hi - lo) * q for q in ranked["q"].to_list()]


def to_dot(t: Trace) -> str:
    """Graphviz DOT, left to right by hop; Streamlit's ``graphviz_chart`` renders it in the browser."""
    lines = [
        "digraph trace {",
        '  rankdir=LR; node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    for r in t.nodes.iter_rows(named=True):
        title = node_title(r).replace('"', "'")
        extra = "\\n⚠ " + ", ".join(r["path_risk"]) if r["path_risk"] and not r["flagged"] else ""
        pen = ', penwidth=2.5, color="#d62728"' if r["flagged"] else ""
        lines.append(f'  "{r["address"]}" [label="{title}{extra}", fillcolor="{_color(r, t.root)}"{pen}];')
    for r, width in zip(t.edges.iter_rows(named=True), edge_widths(t.edges), strict=True):
        lab = f"{_fmt(r['value'])} {r['token_label']} ×{r['count']}"
        lines.append(f'  "{r["source"]}" -> "{r["target"]}" [label="{lab}", penwidth={width:.2f}];')
    lines.append("}")
    return "\n".join(lines)


Box = tuple[float, float, float, float]  # x, y (top), width, height
LABEL_H = 11.0  # a 9 px edge label's line height


def label_width(text: str, size: float = 9.0) -> float:
    """A generous width for ``text`` in Helvetica at ``size`` px (0.6 em a character: wider than its average)."""
    return 0.6 * size * len(text)


def fit(text: str, w: float, size: float) -> str:
    """``text`` cut to width ``w`` at ``size`` px, with ``…`` when cut (the full text is in the tooltip)."""
    n = int(w / (0.6 * size))
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def free_spot(placed: list[Box], x: float, baseline: float, w: float) -> tuple[float, float]:
    """Where to write a label of width ``w`` near ``(x, baseline)`` without covering anything in ``placed``: the
    first of baseline, one line below, one above, two below, ... that is clear; the chosen box is added to
    ``placed``. Greedy and deterministic: edges are labelled in the trace's order (hop, then largest first)."""
    for k in range(200):
        shift = (k + 1) // 2 * LABEL_H * (1 if k % 2 else -1)
        box = (x, baseline + shift - LABEL_H + 2, w, LABEL_H)
        if all(not _overlap(box, b) for b in placed):
            placed.append(box)
            return x, baseline + shift
    placed.append((x, baseline - LABEL_H + 2, w, LABEL_H))
    return x, baseline


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def to_svg(t: Trace, width: int = 1100) -> str:
    """An SVG drawing: one column per hop (inbound hops to the left of the root, outbound to the right)."""
    nodes = t.nodes.with_columns(
        pl.when(pl.col("side") == "in").then(-pl.col("hop")).otherwise(pl.col("hop")).alias("col")
    ).sort("col", "flagged", "address", descending=[False, True, False])
    cols = sorted(set(nodes["col"].to_list()))
    per_col = nodes.group_by("col").len()
    rows_max = max(per_col["len"].to_list() or [1])
    box_w, box_h, gap_y = 170, 34, 14
    height = max(200, rows_max * (box_h + gap_y) + 60)
    step = (width - box_w - 40) / max(1, len(cols) - 1)
    pos: dict[str, tuple[float, float]] = {}
    counters: dict[int, int] = {}
    for r in nodes.iter_rows(named=True):
        i = counters.get(r["col"], 0)
        counters[r["col"]] = i + 1
        pos[r["address"]] = (20 + cols.index(r["col"]) * step, 40 + i * (box_h + gap_y))
    first_height = height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="Helvetica" '
        'font-size="11"><defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>'
    ]
    for c in cols:
        x = 20 + cols.index(c) * step
        out.append(f'<text x="{x}" y="20" fill="#444">hop {c:+d}</text>' if c else f'<text x="{x}" y="20">root</text>')
    placed: list[Box] = [(x, y, box_w, box_h) for x, y in pos.values()]  # labels keep off the boxes too
    for r, w in zip(t.edges.iter_rows(named=True), edge_widths(t.edges), strict=True):
        (x1, y1), (x2, y2) = pos[r["source"]], pos[r["target"]]
        ax, ay, bx, by = x1 + box_w, y1 + box_h / 2, x2, y2 + box_h / 2
        if x2 <= x1:  # same column or backwards: route around
            ax, bx = x1 + box_w / 2, x2 + box_w / 2
        text = f"{_fmt(r['value'])} {r['token_label']} ×{r['count']}"
        lab = html.escape(text)
        lx, ly = free_spot(placed, (ax + bx) / 2 - label_width(text) / 2, (ay + by) / 2 - 3, label_width(text))
        out.append(
            f'<path d="M{ax},{ay} C{(ax + bx) / 2},{ay} {(ax + bx) / 2},{by} {bx},{by}" stroke="#888" '
            f'stroke-width="{w:.2f}" fill="none" marker-end="url(#a)"><title>{lab}</title></path>'
            f'<text x="{lx:.1f}" y="{ly:.1f}" fill="#555" font-size="9">{lab}</text>'
        )
        height = max(height, int(ly) + 20)
    for r in nodes.iter_rows(named=True):
        x, y = pos[r["address"]]
        stroke = ' stroke="#d62728" stroke-width="3"' if r["flagged"] else ' stroke="#555"'
        tip = html.escape(f"{r['address']} {r['label'] or ''} {r['category'] or ''} risk on path: {r['path_risk']}")
        out.append(
            f'<g><title>{tip}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{_color(r, t.root)}"{stroke}/><text x="{x + 6}" y="{y + 14}" fill="#000">'
            f"{html.escape(fit(node_title(r), box_w - 12, 11.0))}</text>"
            f'<text x="{x + 6}" y="{y + 27}" fill="#222" font-size="9">{short(r["address"])}</text></g>'
        )
    out.append("</svg>")
    out[0] = out[0].replace(f'height="{first_height}"', f'height="{height}"', 1)
    return "".join(out)


def to_html(t: Trace) -> str:
    nodes = t.nodes.select("address", "hop", "side", "label", "category", "flagged", "path_risk", "tokens")
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v) if v is not None else '')}</td>" for v in r) + "</tr>"
        for r in nodes.iter_rows()
    )
    head = "".join(f"<th>{c}</th>" for c in nodes.columns)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>trace {t.root}</title>"
        "<style>body{font-family:Helvetica,sans-serif} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>"
        f"<h2>Trace of {t.root} ({t.direction}, {t.hops} hops)</h2>{to_svg(t)}"
        f"<h3>Nodes</h3><table><tr>{head}</tr>{rows}</table></body></html>"
    )


def write(t: Trace, path: str | Path) -> Path:
    """Write the trace by file extension: ``.json``, ``.dot``/``.gv``, ``.html``/``.svg``."""
    from continuum.errors import UserError

    p = Path(path)
    writers = {".json": to_json, ".dot": to_dot, ".gv": to_dot, ".html": to_html, ".svg": to_svg}
    if p.suffix not in writers:
        raise UserError(f"--out {path}: unknown graph format; use .json, .dot, .html or .svg")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(writers[p.suffix](t))
    return p
