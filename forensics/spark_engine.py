"""``trace``, ``counterparties`` and ``alerts`` on Apache Spark, for a transfer lake one machine cannot scan.

The same questions and the same answers as :mod:`forensics.queries` (same columns, rows and values; the test
``tests/forensics/test_spark_engine.py`` holds the two engines equal), computed where the data is:

- what grows with the lake runs in Spark: reading the Parquet files, filters, the hourly price join, each hop
  of a trace (the transfers joined to the frontier, aggregated per edge, the ``top`` counterparties per node
  kept with a window), the counterparty aggregation and the alert rules;
- what grows with the *answer* runs on the driver in polars: the frontier and the set of reached nodes (never
  more than the trace's own edges, which are returned to the caller anyway), decimals, the per-token and
  per-node totals, and the labels. Each hop is one Spark job; its edges come back through Arrow. The tables of
  ``counterparties`` and ``alerts`` are finished by the very functions the polars engine ends with
  (:func:`forensics.queries.counterparty_table` from one address's transfers, :func:`~forensics.queries.alert_table`
  from the hits), so amounts, USDT, rankings and wording cannot drift apart.

No home-made distribution: a hop is a broadcast join of the transfer table with the frontier, a ``groupBy``
and a window, planned and spread over the cluster by Spark. The engine reads the lake with
:mod:`forensics.spark_lake` and takes from :mod:`forensics.queries` only the result type, its column lists and
the label set and those two finishing functions, so the polars queries can change inside without touching this
file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from forensics import spark_lake
from forensics.queries import (
    _TRANSFER_COLS,
    Trace,
    alert_table,
    counterparty_table,
    finish_trace,
    labels_frame,
    large_thresholds,
    reach,
)
from forensics.rules import ALERT_RULES, DEFAULT_STOP_CATEGORIES, RISK_CATEGORIES
from forensics.values import DecimalsLookup, token_meta

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

R = TypeVar("R")
_STR_LIST = pl.List(pl.String)
_AGG_SCHEMA = {
    "node": pl.String,
    "next": pl.String,
    "tkey": pl.String,
    "token": pl.String,
    "symbol": pl.String,
    "raw_sum": pl.Float64,
    "stored_sum": pl.Float64,
    "px_raw": pl.Float64,
    "px_stored": pl.Float64,
    "count": pl.Int64,
    "first_ts": pl.Int64,
    "last_ts": pl.Int64,
}


def _on_any_lake(query: Callable[..., R]) -> Callable[..., R]:
    """Give ``query`` a session (the one passed as ``spark=``, else :func:`forensics.spark_session.session`) and
    run it with :func:`forensics.spark_lake.with_reader_fallback`, so lakes with all-null columns read too."""

    @functools.wraps(query)
    def run(*args: Any, spark: SparkSession | None = None, **kw: Any) -> R:
        from forensics.spark_session import session

        spark = spark if spark is not None else session()
        return spark_lake.with_reader_fallback(spark, lambda: query(*args, spark=spark, **kw))

    return run


def _collect(df: DataFrame) -> pl.DataFrame:
    """A Spark result on the driver as a polars frame, through Arrow (no pandas, no per-row Python objects)."""
    return pl.from_arrow(df.toArrow())  # type: ignore[return-value]


def _to_spark(spark: SparkSession, df: pl.DataFrame) -> DataFrame:
    """A small driver-side frame (frontier, labels, thresholds) as a Spark DataFrame, through Arrow."""
    return spark.createDataFrame(df.to_arrow())


# --------------------------------------------------------------------------- trace
@_on_any_lake
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
    spark: SparkSession,  # filled in by @_on_any_lake when the caller passes none
    cache: bool = False,
) -> Trace:
    """:func:`forensics.queries.trace` on Spark: the same breadth-first hops, time-respecting paths, ``top``
    cap, service stops, labels, risk flags and per-token totals.

    ``source``: a :class:`continuum.lake.Lake`, a folder, or a URI (``s3a://bucket/lake``). ``cache``: keep the
    filtered transfers in Spark's storage (memory, spilling to disk) across hops instead of reading the Parquet
    files once per hop (bench/forensics_spark.py measures both).
    """
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be out, in or both, got {direction!r}")
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    address = address.lower()
    root = spark_lake.lake_root(source)
    lab = labels_frame(labels)
    stop = lab.filter(pl.col("category").is_in(list(stop_at)))["address"].implode()
    risky = lab.filter(pl.col("category").is_in(list(RISK_CATEGORIES)))
    risk_of = risky.select(pl.col("address").alias("next"), pl.col("category").alias("next_cat"))

    tx = spark_lake.transfers(spark, root, token=token, start=start, end=end)
    decimals = functools.cache(decimals) if decimals is not None else None  # one lookup per token per trace
    prices = spark_lake.hourly_prices(spark, root)
    held = [df for df in (tx if cache and hops > 1 else None, prices) if df is not None]
    for df in held:
        df.persist()

    sides = ["out", "in"] if direction == "both" else [direction]
    root_risk = risky.filter(pl.col("address") == address)["category"].to_list()
    start_front = pl.DataFrame(
        {"node": [address], "bound": [None], "risk": [root_risk]},
        schema={"node": pl.String, "bound": pl.Int64, "risk": _STR_LIST},
    )
    frontiers = {s: start_front for s in sides}
    seen = pl.DataFrame(
        {"address": [address], "hop": [0], "side": ["root"], "path_risk": [root_risk]},
        schema={"address": pl.String, "hop": pl.Int64, "side": pl.String, "path_risk": _STR_LIST},
    )
    found: list[pl.DataFrame] = []
    try:
        for h in range(1, hops + 1):
            for side in sides:
                front = frontiers[side]
                if front.is_empty() or tx is None:
                    frontiers[side] = front.clear()
                    continue
                agg = _hop(spark, tx, prices, front, side, time_respecting, top, min_value, decimals)
                if agg.is_empty():
                    frontiers[side] = front.clear()
                    continue
                # path risk: the frontier node's, plus the category of the address it reaches
                agg = agg.join(front.select("node", "risk"), on="node", how="left").join(risk_of, on="next", how="left")
                agg = agg.with_columns(
                    pl.concat_list("risk", "next_cat").list.drop_nulls().list.unique().list.sort().alias("risk")
                )
                found.append(_edges_of_hop(agg, side, h))
                seen, new = reach(seen, agg, side, h)
                frontiers[side] = new.filter(~pl.col("next").is_in(stop)).select(
                    pl.col("next").alias("node"), "bound", "risk"
                )
    finally:
        for df in held:
            df.unpersist()

    return finish_trace(address, direction, hops, found, seen, lab, decimals)


def _hop(
    spark: SparkSession,
    tx: DataFrame,
    prices: DataFrame | None,
    front: pl.DataFrame,
    side: str,
    time_respecting: bool,
    top: int,
    min_value: float = 0.0,
    decimals: DecimalsLookup | None = None,
) -> pl.DataFrame:
    """One hop in Spark: the frontier's transfers (out of it, or into it), priced, those below ``min_value`` in
    their token's own units dropped, aggregated per (node, next, token), the ``top`` largest per node kept (by
    USDT where priced, then by amount); collected as a polars frame. Prices join after the frontier join, so
    only the hop's own transfers are priced, not the whole table."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    near, far = ("from_address", "to_address") if side == "out" else ("to_address", "from_address")
    frontier = _to_spark(spark, front.select(pl.col("node").alias(near), "bound"))
    q = tx.join(F.broadcast(frontier), near)
    if time_respecting:  # forward: funds leave a node only after they reached it; backward: the mirror
        after = (F.col("ts") >= F.col("bound")) if side == "out" else (F.col("ts") <= F.col("bound"))
        q = q.where(F.col("bound").isNull() | after)
    q = q.select(
        F.col(near).alias("node"), F.col(far).alias("next"), "token", "symbol", "ts", "value", "raw_value"
    ).where(F.col("next") != F.col("node"))
    q = spark_lake.priced(q, prices)
    if min_value > 0:
        q, amount = _with_amount(spark, q, decimals)
        q = q.where(amount >= min_value).drop("decimals")
    agg = q.groupBy("node", "next", "tkey").agg(
        F.first("token").alias("token"),
        F.first("symbol", ignorenulls=True).alias("symbol"),
        *_edge_sums(),
        F.count(F.lit(1)).alias("count"),
        F.min("ts").alias("first_ts"),
        F.max("ts").alias("last_ts"),
    )
    largest = Window.partitionBy("node").orderBy(
        F.col("px_stored").desc_nulls_last(), F.col("stored_sum").desc_nulls_last(), "next", "tkey"
    )
    kept = agg.withColumn("_rank", F.row_number().over(largest)).where(F.col("_rank") <= top).drop("_rank")
    out = _collect(kept)
    return out.cast(_AGG_SCHEMA) if out.height else pl.DataFrame(schema=_AGG_SCHEMA)  # type: ignore[arg-type]


def _with_amount(spark: SparkSession, q: DataFrame, decimals: DecimalsLookup | None) -> tuple[DataFrame, Column]:
    """``q`` with its tokens' ``decimals`` joined in, and each row's amount in its token's own units as
    :func:`forensics.values.amounts` computes it: the exact ``raw`` over 10^decimals, ``raw`` itself for a token
    of unknown decimals, the stored value without a raw amount. A hop's tokens are few: their decimals are
    resolved on the driver (a contract lookup, the table) and broadcast."""
    from pyspark.sql import functions as F

    keys = [r["tkey"] for r in q.select("tkey").distinct().collect()]
    meta = token_meta(keys, decimals).select("tkey", "decimals")
    joined = q.join(F.broadcast(_to_spark(spark, meta)), "tkey", "left")
    raw, dec = joined["raw"], joined["decimals"]
    amount = (
        F.when(raw.isNotNull() & dec.isNotNull(), raw / F.pow(F.lit(10.0), dec))
        .when(raw.isNotNull(), raw)
        .otherwise(joined["value"])
    )
    return joined, amount


def _edge_sums() -> list[Column]:
    """:func:`forensics.values.edge_sums` in Spark: exact-amount sum, stored-value sum and price x amount sums,
    each null as soon as one transfer of the edge lacks what it needs (no partial values)."""
    from pyspark.sql import functions as F

    def nulls(c: str) -> Column:
        return F.sum(F.col(c).isNull().cast("int"))

    return [
        F.when(nulls("raw") == 0, F.sum("raw")).alias("raw_sum"),
        F.coalesce(F.sum("value"), F.lit(0.0)).alias("stored_sum"),
        F.when((nulls("price") == 0) & (nulls("raw") == 0), F.sum(F.col("raw") * F.col("price"))).alias("px_raw"),
        F.when(nulls("price") == 0, F.sum(F.col("value") * F.col("price"))).alias("px_stored"),
    ]


def _edges_of_hop(agg: pl.DataFrame, side: str, hop: int) -> pl.DataFrame:
    """The hop's aggregates as edges pointing the way the money moved (``source -> target``)."""
    src, dst = ("node", "next") if side == "out" else ("next", "node")
    return agg.select(
        pl.col(src).alias("source"),
        pl.col(dst).alias("target"),
        "token",
        "symbol",
        "tkey",
        "raw_sum",
        "stored_sum",
        "px_raw",
        "px_stored",
        "count",
        "first_ts",
        "last_ts",
        pl.lit(hop, pl.Int64).alias("hop"),
    )


# --------------------------------------------------------------------------- counterparties
@_on_any_lake
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
    decimals: DecimalsLookup | None = None,
    spark: SparkSession,  # filled in by @_on_any_lake when the caller passes none
) -> pl.DataFrame:
    """:func:`forensics.queries.counterparties` on Spark: the address's transfers, both directions, are found and
    priced in one pass over the table in Spark; the table (per-token amounts, USDT, ranking, labels) is
    :func:`forensics.queries.counterparty_table` on the driver, which holds that one address's transfers."""
    from pyspark.sql import functions as F

    if by not in ("value", "count"):
        raise ValueError(f"by must be value or count, got {by!r}")
    address = address.lower()
    root = spark_lake.lake_root(source)
    tx = spark_lake.transfers(spark, root, token=token, start=start, end=end)
    if tx is None:
        return counterparty_table(_empty_rows(), by=by, limit=limit, labels=labels)
    sent = F.col("from_address") == address  # one pass over the table for both directions
    rows = (
        tx.where(sent | (F.col("to_address") == address))
        .select(
            F.when(sent, F.col("to_address")).otherwise(F.col("from_address")).alias("counterparty"),
            F.when(sent, F.lit("out")).otherwise(F.lit("in")).alias("side"),
            "token",
            "symbol",
            "ts",
            "value",
            "raw_value",
        )
        .where(F.col("counterparty") != address)
    )
    got = _collect(spark_lake.priced(rows, spark_lake.hourly_prices(spark, root)))
    got = got.cast({c: t for c, t in _ROWS_SCHEMA.items() if c in got.columns}) if got.height else _empty_rows()
    return counterparty_table(got, by=by, limit=limit, labels=labels, decimals=decimals, min_value=min_value)


_ROWS_SCHEMA = {"counterparty": pl.String, "side": pl.String, "token": pl.String, "symbol": pl.String,
                "ts": pl.Int64, "value": pl.Float64, "raw_value": pl.String, "tkey": pl.String,
                "price": pl.Float64}  # fmt: skip


def _empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=_ROWS_SCHEMA)


# --------------------------------------------------------------------------- alerts
@_on_any_lake
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
    decimals: DecimalsLookup | None = None,
    spark: SparkSession,  # filled in by @_on_any_lake when the caller passes none
) -> pl.DataFrame:
    """:func:`forensics.queries.alerts` on Spark: transfers that hit a rule, one row per (transfer, rule), newest
    first. Every rule is a condition on the transfers joined (broadcast) to the label set and the ``large``
    thresholds (per token, in raw units where the transfer has an exact amount); the table is read once for all
    of them, and the hits are finished by :func:`forensics.queries.alert_table` on the driver."""
    from pyspark.sql import functions as F

    unknown = set(rules) - set(ALERT_RULES)
    if unknown:
        raise ValueError(f"unknown alert rules {sorted(unknown)}; known: {', '.join(ALERT_RULES)}")
    decimals = functools.cache(decimals) if decimals is not None else None
    tx = spark_lake.transfers(spark, spark_lake.lake_root(source), token=token, start=start, end=end)
    watched = [a.lower() for a in watch]
    chosen = [r for r in ALERT_RULES if r in rules and (r != "watch" or watched)]
    thr = _thresholds(large, decimals) if "large" in chosen else None  # unknown token names fail before Spark runs
    if tx is None or not chosen:
        return alert_table(pl.DataFrame(), decimals)
    cats = _to_spark(spark, labels_frame(labels).select("address", "name", "category"))
    frm = cats.select(F.col("address").alias("from_address"), F.col("name").alias("from_label"),
                      F.col("category").alias("from_cat"))  # fmt: skip
    to = cats.select(F.col("address").alias("to_address"), F.col("name").alias("to_label"),
                     F.col("category").alias("to_cat"))  # fmt: skip
    base = tx.join(F.broadcast(frm), "from_address", "left").join(F.broadcast(to), "to_address", "left")
    if thr is not None:
        base = base.withColumn("tkey", spark_lake.token_key()).join(F.broadcast(_to_spark(spark, thr)), "tkey", "left")
    conds = _rule_conditions(watched)
    # one pass over the transfers: each row carries the rules it hits (an array, nulls dropped), one row per hit
    hit = [
        F.when(conds[r][0], F.struct(F.lit(r).alias("rule"), conds[r][1].alias("detail")))
        for r in chosen
    ]  # fmt: skip
    hits = base.select("*", F.explode(F.filter(F.array(*hit), lambda h: h.isNotNull())).alias("hit"))
    hits = hits.select(*_TRANSFER_COLS, "from_label", "to_label", "hit.rule", "hit.detail")
    return alert_table(_collect(hits), decimals)  # ordered on the driver: a global sort in Spark reads twice


def _thresholds(large: dict[str, float] | None, decimals: DecimalsLookup | None) -> pl.DataFrame:
    """``tkey, threshold, raw_threshold, large_detail`` from :func:`forensics.queries.large_thresholds`; the text
    of a ``large`` hit is formatted here by polars, so it reads exactly as the polars engine's (Spark would print
    1e7 as ``1.0E7``)."""
    thr = large_thresholds(large, decimals)
    return thr.select(
        "tkey",
        "threshold",
        (pl.col("threshold") * pl.lit(10.0).pow(pl.col("decimals").cast(pl.Float64)).fill_null(1.0)).alias(
            "raw_threshold"
        ),
        pl.format("value >= {} {}", "threshold", "name").alias("large_detail"),
    )


def _rule_conditions(watched: list[str]) -> dict[str, tuple[Column, Column]]:
    """Rule -> (which transfers hit it, the detail text), as :func:`forensics.queries.alerts` words them."""
    from pyspark.sql import functions as F

    fc, tc = F.col("from_cat"), F.col("to_cat")
    from_label, to_label = F.col("from_label"), F.col("to_label")
    return {
        "sanctioned": (
            (fc == "sanctioned") | (tc == "sanctioned"),
            F.concat(F.when(tc == "sanctioned", F.lit("to ")).otherwise(F.lit("from ")), F.lit("sanctioned address")),
        ),
        "mixer_deposit": (tc == "mixer", F.concat(F.lit("deposit into "), F.coalesce(to_label, F.lit("mixer")))),
        "mixer_withdrawal": (
            fc == "mixer",
            F.concat(F.lit("withdrawal from "), F.coalesce(from_label, F.lit("mixer"))),
        ),
        "exploit": (
            (fc == "exploit") | (tc == "exploit"),
            F.when(tc == "exploit", F.concat(F.lit("to exploit address "), F.coalesce(to_label, F.lit("")))).otherwise(
                F.concat(F.lit("from exploit address "), F.coalesce(from_label, F.lit("")))
            ),
        ),
        "phishing": (tc == "phishing", F.concat(F.lit("to phishing address "), F.coalesce(to_label, F.lit("")))),
        "large": (
            F.when(
                F.col("raw_value").try_cast("double").isNotNull(),
                F.col("raw_value").try_cast("double") >= F.col("raw_threshold"),
            ).otherwise(F.col("value") >= F.col("threshold")),
            F.col("large_detail"),
        ),
        "watch": (
            F.col("from_address").isin(watched) | F.col("to_address").isin(watched),
            F.lit("watched address"),
        ),
    }
