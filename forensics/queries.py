"""Onchain forensics over the lake's transfer table: fund tracing, counterparties, alert rules.

These answer the questions in reference/peer_systems.md §4.5 that an analyst asks first (GraphSense's
neighbours / multi-hop search, Dune's "all transfers of an address", whale and sanctions alerts):

- :func:`trace` (F1): breadth-first over N hops from an address, forward (where did the money go),
  backward (where did it come from) or both, with value and count per edge and a label, category and
  risk flags on every node;
- :func:`counterparties` (F3): who an address trades with, ranked, with in/out value and first/last seen;
- :func:`alerts` (F4-F6): rule hits over a time range (sanctioned touches, mixer deposits/withdrawals,
  flows to exploit and phishing addresses, large transfers, watched addresses).

Everything is a polars query over ``Lake.scan("transfer")``: one lazy query per hop, filters pushed
into the Parquet scan, no Python loop over rows. Labels come from :mod:`continuum.labels` and can be
passed explicitly (tests, custom tag sets).

Time-respecting paths: by default a forward trace only follows a transfer out of a node made at or after
the first transfer that brought funds into it (and a backward trace only transfers into a node made at
or before its last outgoing transfer on the path). Without that, a 3-hop trace of any busy address
pulls in funds that were there long before the money being traced arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from forensics.rules import (  # noqa: F401 (part of this module's interface)
    ALERT_RULES,
    DEFAULT_LARGE,
    DEFAULT_STOP_CATEGORIES,
    RISK_CATEGORIES,
    SEVERITY,
)
from forensics.values import DecimalsLookup, edge_sums, finish_edges, hourly_prices, priced

_TRANSFER_COLS = ["ts", "tx_hash", "log_index", "token", "symbol", "from_address", "to_address", "value", "raw_value"]
_EMPTY_TRANSFERS = pl.Schema(
    {
        "ts": pl.Int64,
        "tx_hash": pl.String,
        "log_index": pl.Int64,
        "token": pl.String,
        "symbol": pl.String,
        "from_address": pl.String,
        "to_address": pl.String,
        "value": pl.Float64,
        "raw_value": pl.String,
    }
)


@dataclass(frozen=True)
class Trace:
    """A trace result. ``nodes``: one row per address; ``edges``: one row per (source, target, token)."""

    root: str
    direction: str
    hops: int
    nodes: pl.DataFrame
    edges: pl.DataFrame
    totals: pl.DataFrame  # per (address, token): value_in/out, usd_in/out, count_in/out

    @property
    def flagged(self) -> pl.DataFrame:
        """Nodes in a risk category (sanctioned, mixer, exploit, phishing)."""
        return self.nodes.filter(pl.col("flagged"))


# --------------------------------------------------------------------------- inputs
def labels_frame(labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """The label set (``address, name, category, source``); the shipped one unless given."""
    if labels is not None:
        return labels.select("address", "name", "category", "source")
    from continuum.labels import load_labels

    return load_labels().select("address", "name", "category", "source")


def transfers(
    source: pl.LazyFrame | pl.DataFrame | object,
    *,
    token: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    min_value: float = 0.0,
) -> pl.LazyFrame:
    """The transfer rows a query works on, lazily filtered by token (symbol or contract), time and value.

    ``source`` is a :class:`continuum.lake.Lake`, or a (Lazy)Frame with the Transfer columns.
    ``token``: a symbol (``USDC``, ``ETH`` for native ether) or a lower/mixed-case contract address.
    """
    if hasattr(source, "scan"):
        lf = source.scan("transfer", start=start, end=end)  # type: ignore[union-attr]
        if not lf.collect_schema().names():
            return pl.LazyFrame(schema=_EMPTY_TRANSFERS)
    else:
        lf = source.lazy()  # type: ignore[union-attr]
        if start is not None:
            lf = lf.filter(pl.col("ts") >= int(start.timestamp() * 1000))
        if end is not None:
            lf = lf.filter(pl.col("ts") < int(end.timestamp() * 1000))
    if "raw_value" not in lf.collect_schema().names():
        lf = lf.with_columns(pl.lit(None, pl.String).alias("raw_value"))  # a frame without exact amounts
    lf = lf.select(_TRANSFER_COLS).with_columns(pl.col("log_index").cast(pl.Int64), pl.col("ts").cast(pl.Int64))
    if token:
        t = token.strip()
        if t.lower().startswith("0x"):
            lf = lf.filter(pl.col("token") == t.lower())
        else:
            lf = lf.filter(pl.col("symbol").str.to_uppercase() == t.upper())
    if min_value > 0:
        lf = lf.filter(pl.col("value") >= min_value)
    return lf


def _tag(df: pl.DataFrame, col: str, labels: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    lab = labels.select(
        pl.col("address").alias(col),
        pl.col("name").alias(f"{prefix}label"),
        pl.col("category").alias(f"{prefix}category"),
        pl.col("source").alias(f"{prefix}label_source"),
    )
    return df.join(lab, on=col, how="left", maintain_order="left")


# --------------------------------------------------------------------------- trace
def trace(
    source: object,
    address: str,
    hops: int = 2,
    direction: str = "out",
    *,
    min_value: float = 0.0,
    token: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    labels: pl.DataFrame | None = None,
    stop_at: tuple[str, ...] = DEFAULT_STOP_CATEGORIES,
    top: int = 25,
    time_respecting: bool = True,
    decimals: DecimalsLookup | None = None,
) -> Trace:
    """Follow funds from ``address`` breadth-first over ``hops`` hops.

    Each hop is one lazy query: the transfers out of (``direction="out"``), into (``"in"``) or both of the
    current frontier, aggregated per (source, target, token) into value, count and first/last time.
    Per frontier node only the ``top`` counterparties by value are followed (a hot wallet has thousands).
    Nodes in ``stop_at`` categories are shown but not expanded. Every node carries its label, category,
    ``flagged`` (its category is a risk category) and ``path_risk`` (risk categories on any traced path
    from the root up to and including it).

    Values (:mod:`forensics.values`): amounts are recomputed from ``raw_value`` with decimals from the token
    contract (``decimals``: a lookup, e.g. JSON-RPC with a cache), else the known-token table, else left in raw
    units (``unit = "raw"``); ``usd`` is USDT at the transfer's hour from the lake's candles, null when unknown.

    Returns a :class:`Trace`; ``edges`` (:data:`EDGE_COLUMNS`): one row per (source, target, token) with
    ``value, unit, usd, count, first_ts, last_ts, hop``; ``totals``: per (address, token) in and out;
    ``nodes`` (:data:`NODE_COLUMNS`): ``value_in``/``token_in`` only when that side carries one token (amounts
    of different tokens are never added), ``usd_in`` over the priced tokens and ``unpriced_in`` the number of
    tokens without a price (so a partial USDT sum is visible as such).
    """
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be out, in or both, got {direction!r}")
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    address = address.lower()
    lab = labels_frame(labels)
    lf = priced(transfers(source, token=token, start=start, end=end, min_value=min_value), hourly_prices(source))
    stop = lab.filter(pl.col("category").is_in(list(stop_at)))["address"].implode()
    risky = lab.filter(pl.col("category").is_in(list(RISK_CATEGORIES)))

    sides = ["out", "in"] if direction == "both" else [direction]
    # frontier per side: node, the time bound for time-respecting paths, and the risk seen on the path so far
    root_risk = risky.filter(pl.col("address") == address)["category"].to_list()
    frontiers = {
        s: pl.DataFrame(
            {"node": [address], "bound": [None], "risk": [root_risk]},
            schema={"node": pl.String, "bound": pl.Int64, "risk": pl.List(pl.String)},
        )
        for s in sides
    }
    seen = pl.DataFrame({"address": [address], "hop": [0], "side": ["root"], "path_risk": [root_risk]})
    seen = seen.cast({"hop": pl.Int64, "path_risk": pl.List(pl.String)})
    all_edges: list[pl.DataFrame] = []
    risk_of = risky.select(pl.col("address").alias("next"), pl.col("category").alias("next_cat")).lazy()

    for h in range(1, hops + 1):
        for side in sides:
            front = frontiers[side]
            if front.is_empty():
                continue
            near, far = ("from_address", "to_address") if side == "out" else ("to_address", "from_address")
            q = lf.join(front.lazy(), left_on=near, right_on="node", how="inner").rename({near: "node", far: "next"})
            if time_respecting:
                after = pl.col("ts") >= pl.col("bound") if side == "out" else pl.col("ts") <= pl.col("bound")
                q = q.filter(pl.col("bound").is_null() | after)
            q = q.filter(pl.col("next") != pl.col("node"))
            agg = (
                q.group_by("node", "next", "tkey")
                .agg(
                    pl.col("token").first(),
                    pl.col("symbol").drop_nulls().first(),
                    *edge_sums(),
                    pl.len().alias("count"),
                    pl.col("ts").min().alias("first_ts"),
                    pl.col("ts").max().alias("last_ts"),
                    pl.col("risk").first(),
                )
                # follow the largest flows: by USDT value where priced, then by amount (like with like per token)
                .sort(["px_stored", "stored_sum"], descending=True, nulls_last=True)
                .group_by("node", maintain_order=True)
                .head(top)
                .join(risk_of, on="next", how="left")
                .with_columns(
                    pl.concat_list(pl.col("risk"), pl.col("next_cat"))
                    .list.drop_nulls()
                    .list.unique()
                    .list.sort()
                    .alias("risk")
                )
                .collect()
            )
            if agg.is_empty():
                frontiers[side] = front.clear()
                continue
            src, dst = ("node", "next") if side == "out" else ("next", "node")
            all_edges.append(
                agg.select(
                    pl.col(src).alias("source"),
                    pl.col(dst).alias("target"),
                    "token",
                    "symbol",
                    "tkey",
                    "raw_sum",
                    "stored_sum",
                    "px_raw",
                    "px_stored",
                    pl.col("count").cast(pl.Int64),
                    "first_ts",
                    "last_ts",
                    pl.lit(h, pl.Int64).alias("hop"),
                )
            )
            # new nodes: first discovery wins the hop/side; path risk is the union over all parents
            reached = agg.group_by("next").agg(
                # time bound for onward hops: earliest arrival (forward) / latest departure (backward)
                (pl.col("first_ts").min() if side == "out" else pl.col("last_ts").max()).alias("bound"),
                pl.col("risk").list.explode(keep_nulls=False, empty_as_null=False).unique().sort().alias("risk"),
            )
            new = reached.join(seen.select(pl.col("address").alias("next")), on="next", how="anti")
            seen = pl.concat(
                [
                    seen,
                    new.select(
                        pl.col("next").alias("address"),
                        pl.lit(h, pl.Int64).alias("hop"),
                        pl.lit(side).alias("side"),
                        pl.col("risk").alias("path_risk"),
                    ),
                ]
            )
            # merge risk reaching already-seen nodes too (a second path through a mixer still counts)
            seen = (
                seen.join(reached.select(pl.col("next").alias("address"), "risk"), on="address", how="left")
                .with_columns(
                    pl.concat_list("path_risk", pl.col("risk").fill_null(pl.lit([], pl.List(pl.String))))
                    .list.unique()
                    .list.sort()
                    .alias("path_risk")
                )
                .drop("risk")
            )
            frontiers[side] = new.filter(~pl.col("next").is_in(stop)).select(
                pl.col("next").alias("node"), "bound", "risk"
            )

    raw_edges = (
        pl.concat(all_edges).unique(subset=["source", "target", "tkey"], keep="first", maintain_order=True)
        if all_edges
        else pl.DataFrame(schema=_RAW_EDGE_SCHEMA)
    )
    edges = (
        finish_edges(raw_edges, decimals)
        .select(EDGE_COLUMNS)
        .sort(["hop", "usd", "value"], descending=[False, True, True], nulls_last=True)
    )
    totals = _token_totals(edges)
    nodes = _node_totals(seen, edges, totals)
    nodes = _tag(nodes, "address", lab).with_columns(
        pl.col("category").is_in(list(RISK_CATEGORIES)).fill_null(False).alias("flagged")
    )
    return Trace(address, direction, hops, nodes.select(NODE_COLUMNS).sort("hop", "address"), edges, totals)


EDGE_COLUMNS = ["source", "target", "token", "symbol", "token_label", "value", "unit", "usd"]
EDGE_COLUMNS += ["count", "first_ts", "last_ts", "hop", "decimals_source"]
NODE_COLUMNS = ["address", "hop", "side", "label", "category", "label_source", "flagged", "path_risk"]
NODE_COLUMNS += ["count_in", "count_out", "value_in", "token_in", "value_out", "token_out"]
NODE_COLUMNS += ["usd_in", "usd_out", "unpriced_in", "unpriced_out", "n_tokens_in", "n_tokens_out", "tokens"]
_RAW_EDGE_SCHEMA = {
    "source": pl.String,
    "target": pl.String,
    "token": pl.String,
    "symbol": pl.String,
    "tkey": pl.String,
    "raw_sum": pl.Float64,
    "stored_sum": pl.Float64,
    "px_raw": pl.Float64,
    "px_stored": pl.Float64,
    "count": pl.Int64,
    "first_ts": pl.Int64,
    "last_ts": pl.Int64,
    "hop": pl.Int64,
}


def _token_totals(edges: pl.DataFrame) -> pl.DataFrame:
    """Per (address, token): value and count in and out over the traced edges, and USDT where every edge is priced."""

    def side(col: str, suffix: str) -> pl.DataFrame:
        return edges.group_by(pl.col(col).alias("address"), "token", "token_label", "unit", "decimals_source").agg(
            pl.col("value").sum().alias(f"value_{suffix}"),
            pl.col("count").sum().alias(f"count_{suffix}"),
            pl.when(pl.col("usd").null_count() == 0).then(pl.col("usd").sum()).alias(f"usd_{suffix}"),
        )

    keys = ["address", "token", "token_label", "unit", "decimals_source"]
    out = side("target", "in").join(side("source", "out"), on=keys, how="full", coalesce=True, nulls_equal=True)
    return (
        out.with_columns(
            pl.col("value_in", "value_out").fill_null(0.0), pl.col("count_in", "count_out").fill_null(0).cast(pl.Int64)
        )
        .select(keys + ["value_in", "value_out", "usd_in", "usd_out", "count_in", "count_out"])
        .sort("address", "token_label")
    )


def _node_totals(seen: pl.DataFrame, edges: pl.DataFrame, totals: pl.DataFrame) -> pl.DataFrame:
    """Per node: transfer counts; the amount and token of a side that carries one token (null when it carries
    several: amounts of different tokens are never added); USDT over the priced tokens and how many are not."""

    def side(suffix: str) -> pl.DataFrame:
        t = totals.filter(pl.col(f"count_{suffix}") > 0)
        return t.group_by("address").agg(
            pl.col(f"count_{suffix}").sum(),
            pl.when(pl.len() == 1).then(pl.col(f"value_{suffix}").first()).alias(f"value_{suffix}"),
            pl.when(pl.len() == 1)
            .then(
                pl.col("token_label").first()
                + pl.when(pl.col("unit").first() == "raw").then(pl.lit(" (raw units)")).otherwise(pl.lit(""))
            )
            .alias(f"token_{suffix}"),
            pl.when(pl.col(f"usd_{suffix}").is_not_null().any())
            .then(pl.col(f"usd_{suffix}").sum())
            .alias(f"usd_{suffix}"),
            pl.col(f"usd_{suffix}").is_null().sum().cast(pl.Int64).alias(f"unpriced_{suffix}"),
            pl.len().cast(pl.Int64).alias(f"n_tokens_{suffix}"),
        )

    out = seen.join(side("in"), on="address", how="left").join(side("out"), on="address", how="left")
    names = totals.group_by("address").agg(pl.col("token_label").unique().sort().str.join(",").alias("tokens"))
    return out.join(names, on="address", how="left").with_columns(
        pl.col("count_in", "count_out", "unpriced_in", "unpriced_out", "n_tokens_in", "n_tokens_out")
        .fill_null(0)
        .cast(pl.Int64),
        pl.col("tokens").fill_null(""),
    )


# --------------------------------------------------------------------------- counterparties
def counterparties(
    source: object,
    address: str,
    *,
    token: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    min_value: float = 0.0,
    labels: pl.DataFrame | None = None,
    by: str = "value",
    limit: int | None = 50,
) -> pl.DataFrame:
    """Who ``address`` sent to and received from: one row per (counterparty, token), ranked.

    Columns: ``rank, counterparty, label, category, symbol, token, value_in, value_out, count_in,
    count_out, first_seen, last_seen`` (ms). ``by="value"`` ranks by in+out value within the ranking
    (values of different tokens are not comparable, so pass ``token`` for a clean value ranking);
    ``by="count"`` by the number of transfers.
    """
    if by not in ("value", "count"):
        raise ValueError(f"by must be value or count, got {by!r}")
    address = address.lower()
    lf = transfers(source, token=token, start=start, end=end, min_value=min_value)
    out_ = lf.filter(pl.col("from_address") == address).select(
        pl.col("to_address").alias("counterparty"),
        "token",
        "symbol",
        "ts",
        pl.lit(0.0).alias("vin"),
        pl.col("value").alias("vout"),
        pl.lit(0).alias("cin"),
        pl.lit(1).alias("cout"),
    )
    in_ = lf.filter(pl.col("to_address") == address).select(
        pl.col("from_address").alias("counterparty"),
        "token",
        "symbol",
        "ts",
        pl.col("value").alias("vin"),
        pl.lit(0.0).alias("vout"),
        pl.lit(1).alias("cin"),
        pl.lit(0).alias("cout"),
    )
    df = (
        pl.concat([out_, in_])
        .filter(pl.col("counterparty") != address)
        .group_by("counterparty", "token", "symbol")
        .agg(
            pl.col("vin").sum().alias("value_in"),
            pl.col("vout").sum().alias("value_out"),
            pl.col("cin").sum().cast(pl.Int64).alias("count_in"),
            pl.col("cout").sum().cast(pl.Int64).alias("count_out"),
            pl.col("ts").min().alias("first_seen"),
            pl.col("ts").max().alias("last_seen"),
        )
        .collect()
    )
    key = (
        [pl.col("value_in") + pl.col("value_out"), pl.col("count_in") + pl.col("count_out")]
        if by == "value"
        else [pl.col("count_in") + pl.col("count_out"), pl.col("value_in") + pl.col("value_out")]
    )
    df = df.sort([*key, "counterparty"], descending=[True, True, False])
    if limit:
        df = df.head(limit)
    df = _tag(df, "counterparty", labels_frame(labels)).with_row_index("rank", offset=1)
    return df.select(
        pl.col("rank").cast(pl.Int64),
        "counterparty",
        "label",
        "category",
        "symbol",
        "token",
        "value_in",
        "value_out",
        "count_in",
        "count_out",
        "first_seen",
        "last_seen",
    )


# --------------------------------------------------------------------------- alerts


def alerts(
    source: object,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    rules: tuple[str, ...] = ALERT_RULES,
    large: dict[str, float] | None = None,
    watch: tuple[str, ...] = (),
    token: str | None = None,
    labels: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Transfers that hit an alert rule, one row per (transfer, rule), newest first.

    Rules: ``sanctioned`` (either side OFAC-listed), ``mixer_deposit`` / ``mixer_withdrawal`` (into / out
    of a mixer), ``exploit`` (to or from an exploit address: stolen funds moving), ``phishing`` (funds
    sent to a phishing address), ``large`` (value at or over ``large[symbol]``; defaults in
    :data:`DEFAULT_LARGE`), ``watch`` (either side in ``watch``).
    Columns: ``ts, rule, severity, symbol, value, from_address, from_label, to_address, to_label, tx_hash,
    log_index, detail``.
    """
    unknown = set(rules) - set(ALERT_RULES)
    if unknown:
        raise ValueError(f"unknown alert rules {sorted(unknown)}; known: {', '.join(ALERT_RULES)}")
    lab = labels_frame(labels)
    lf = transfers(source, token=token, start=start, end=end)
    cats = lab.select("address", "name", "category").lazy()
    tagged = lf.join(
        cats.rename({"address": "from_address", "name": "from_label", "category": "from_cat"}),
        on="from_address",
        how="left",
    ).join(
        cats.rename({"address": "to_address", "name": "to_label", "category": "to_cat"}),
        on="to_address",
        how="left",
    )
    thresholds = {**DEFAULT_LARGE, **(large or {})}
    thr = pl.DataFrame(
        {"symbol": list(thresholds), "threshold": list(thresholds.values())},
        schema={"symbol": pl.String, "threshold": pl.Float64},
    ).lazy()
    fc, tc = pl.col("from_cat"), pl.col("to_cat")
    watched = [a.lower() for a in watch]
    conds: dict[str, tuple[pl.Expr, pl.Expr]] = {
        "sanctioned": (
            (fc == "sanctioned") | (tc == "sanctioned"),
            pl.when(tc == "sanctioned").then(pl.lit("to ")).otherwise(pl.lit("from ")) + pl.lit("sanctioned address"),
        ),
        "mixer_deposit": (tc == "mixer", pl.lit("deposit into ") + pl.col("to_label").fill_null("mixer")),
        "mixer_withdrawal": (fc == "mixer", pl.lit("withdrawal from ") + pl.col("from_label").fill_null("mixer")),
        "exploit": (
            (fc == "exploit") | (tc == "exploit"),
            pl.when(tc == "exploit")
            .then(pl.lit("to exploit address ") + pl.col("to_label").fill_null(""))
            .otherwise(pl.lit("from exploit address ") + pl.col("from_label").fill_null("")),
        ),
        "phishing": (tc == "phishing", pl.lit("to phishing address ") + pl.col("to_label").fill_null("")),
        "large": (
            pl.col("threshold").is_not_null() & (pl.col("value") >= pl.col("threshold")),
            pl.format("value >= {} {}", pl.col("threshold"), pl.col("symbol")),
        ),
        "watch": (
            pl.col("from_address").is_in(watched) | pl.col("to_address").is_in(watched),
            pl.lit("watched address"),
        ),
    }
    base = tagged.join(thr, on="symbol", how="left")
    parts = [
        base.filter(cond.fill_null(False)).with_columns(
            pl.lit(rule).alias("rule"), pl.lit(SEVERITY[rule]).alias("severity"), detail.alias("detail")
        )
        for rule, (cond, detail) in conds.items()
        if rule in rules and (rule != "watch" or watched)
    ]
    cols = ["ts", "rule", "severity", "symbol", "value", "from_address", "from_label", "to_address", "to_label"]
    cols += ["tx_hash", "log_index", "detail"]
    if not parts:
        empty = base.with_columns(pl.lit("").alias("rule"), pl.lit("").alias("severity"), pl.lit("").alias("detail"))
        return empty.select(cols).head(0).collect()
    return pl.concat([p.select(cols) for p in parts]).sort("ts", "log_index", descending=[True, False]).collect()
