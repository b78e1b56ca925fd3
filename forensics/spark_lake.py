"""The lake's transfer and candle tables as Spark DataFrames, filtered and priced as :mod:`forensics.values` says.

Spark reads the same files :class:`continuum.lake.Lake` reads: every ``data.parquet`` under ``ROOT/kind=transfer``
(and ``kind=candle``), at any depth, so a change of partition columns under the kind folder needs no change
here. A transfer run's other sorted copy (``by_to_address.parquet``) holds the same rows and is never read: it
serves the polars engine's backward hops, whose row-group pruning Spark's full scans do not use. ``ROOT`` may
be a local folder or any URI Spark's Hadoop file systems read (``s3a://bucket/lake``,
``hdfs://nn/lake``, ``abfss://…``): on a cluster every executor reads its share of the files itself.

Columns are read with an explicit schema, so files written before a column existed (``raw_value``) read as null
there, as :meth:`Lake.scan` does. Nothing here is a Python UDF: executors run the JVM only and need no Python
packages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from forensics.values import AT_PAR, HOUR_MS, KNOWN_TOKENS, NATIVE_KEY, PRICE_BASE, QUOTE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TRANSFER_COLUMNS = {
    "ts": "bigint",
    "tx_hash": "string",
    "log_index": "bigint",
    "token": "string",
    "symbol": "string",
    "from_address": "string",
    "to_address": "string",
    "value": "double",
    "raw_value": "string",
}
R = TypeVar("R")
CANDLE_COLUMNS = {"ts": "bigint", "symbol": "string", "timeframe": "string", "close": "double"}


def lake_root(source: object) -> str:
    """The lake's root as Spark addresses it: a :class:`Lake`'s folder, or a path / URI string as given."""
    root = getattr(source, "root", source)
    if isinstance(root, Path):
        return str(root.resolve())
    if not isinstance(root, str):
        raise TypeError(f"a Lake, a folder or a URI, not {type(source).__name__}")
    return root if "://" in root else str(Path(root).resolve())


def read_kind(spark: SparkSession, root: str, kind: str, columns: dict[str, str]) -> DataFrame | None:
    """Every ``data.parquet`` under ``ROOT/kind=KIND`` with ``columns``; ``None`` when the lake has none."""
    from pyspark.errors import AnalysisException

    ddl = ", ".join(f"`{c}` {t}" for c, t in columns.items())
    reader = (
        spark.read.schema(ddl)
        .option("recursiveFileLookup", "true")  # the files' own columns, not ones guessed from folder names
        # one copy of each run (not its by_<col>.parquet twin), never the atomic writer's hidden .tmp files
        .option("pathGlobFilter", "data.parquet")
    )
    try:
        return reader.parquet(f"{root.rstrip('/')}/kind={kind}")
    except AnalysisException as e:
        if "PATH_NOT_FOUND" in str(e) or "Path does not exist" in str(e):
            return None
        raise


def transfers(
    spark: SparkSession,
    root: str,
    *,
    token: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> DataFrame | None:
    """Transfer rows filtered as :func:`forensics.queries.transfers` filters them (token by contract or symbol,
    ``start <= ts < end``); ``None`` when the lake has no transfers. Amount filters are in each token's own
    units and need its decimals: the engine applies them (:mod:`forensics.spark_engine`)."""
    from pyspark.sql import functions as F

    df = read_kind(spark, root, "transfer", TRANSFER_COLUMNS)
    if df is None:
        return None
    if start is not None:
        df = df.where(F.col("ts") >= int(start.timestamp() * 1000))
    if end is not None:
        df = df.where(F.col("ts") < int(end.timestamp() * 1000))
    if token:
        t = token.strip()
        if t.lower().startswith("0x"):
            df = df.where(F.col("token") == t.lower())
        else:
            df = df.where(F.upper(F.col("symbol")) == t.upper())
    return df


def price_pairs() -> list[tuple[str, str]]:
    """``(candle symbol, token key)`` for every priced token: ``ETH/USDT`` prices native ether and WETH, and each
    table token its own ``SYMBOL/USDT``; USDT itself is the quote (1 by construction, see :mod:`forensics.values`)."""
    pairs = []
    for tkey in [NATIVE_KEY, *KNOWN_TOKENS]:
        if tkey in AT_PAR:
            continue
        base = PRICE_BASE.get(tkey) or KNOWN_TOKENS[tkey][0]
        pairs.append((f"{base}/{QUOTE}", tkey))
    return pairs


def hourly_prices(spark: SparkSession, root: str) -> DataFrame | None:
    """``tkey, hour, price``: the median over exchanges of each priced token's 1h close; ``None`` without candles."""
    from pyspark.sql import functions as F

    candles = read_kind(spark, root, "candle", CANDLE_COLUMNS)
    if candles is None:
        return None
    pairs = spark.createDataFrame(price_pairs(), "symbol string, tkey string")
    closes = (
        candles.where((F.col("timeframe") == "1h") & F.col("symbol").isin([s for s, _ in price_pairs()]))
        .groupBy("symbol", "ts")
        .agg(F.median("close").alias("price"))
    )
    return closes.join(F.broadcast(pairs), "symbol").select("tkey", F.col("ts").alias("hour"), "price")


def token_key(col: str = "token") -> Column:
    """The token column with native ether as ``"native"`` (as :func:`forensics.values.token_key`)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.col(col), F.lit(NATIVE_KEY))


def priced(df: DataFrame, prices: DataFrame | None) -> DataFrame:
    """Transfers with ``tkey``, ``raw`` (the exact amount as a double, null without one) and ``price`` (USDT per
    token unit at the transfer's hour, null when the lake has no candle for it), as :func:`forensics.values.priced`."""
    from pyspark.sql import functions as F

    df = df.withColumns(
        {
            "tkey": token_key(),
            "hour": F.floor(F.col("ts") / HOUR_MS).cast("bigint") * HOUR_MS,
            "raw": F.col("raw_value").try_cast("double"),
        }
    )
    if prices is None:
        df = df.withColumn("price", F.lit(None).cast("double"))
    else:
        df = df.join(F.broadcast(prices), ["tkey", "hour"], "left")
    at_par = F.col("tkey").isin(sorted(AT_PAR))
    return df.withColumn("price", F.when(at_par, F.lit(1.0)).otherwise(F.col("price")))


VECTORIZED = "spark.sql.parquet.enableVectorizedReader"


def with_reader_fallback(spark: SparkSession, run: Callable[[], R]) -> R:
    """Run a query; if a file has a column that is null in every row, run it again with the row-wise reader.

    polars writes such a column (a month of ether transfers only: ``token`` is all null) with Parquet's Null
    type, which Spark's fast vectorized reader refuses to read as a string (``PARQUET_COLUMN_DATA_TYPE_MISMATCH``)
    while the row-wise reader reads it as nulls. The fast reader stays the default (about 1.3-2.6x faster
    scans, measured on 2M rows); after one such lake the session keeps the row-wise one.
    """
    try:
        return run()
    except Exception as e:  # py4j's error carries the JVM's message; nothing narrower names it
        if "PARQUET_COLUMN_DATA_TYPE_MISMATCH" not in str(e) or spark.conf.get(VECTORIZED) == "false":
            raise
    spark.conf.set(VECTORIZED, "false")
    return run()
