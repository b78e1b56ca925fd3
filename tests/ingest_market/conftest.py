"""Fixtures: one local Binance-speaking exchange per module for the REST tests (reset between tests)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest

from continuum.config import BUNDLED_DATA
from ingest.replay import read_candles
from tests.services.exchange_server import ExchangeServer

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
HOUR = 3_600_000


def ms(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp() * 1000)


def source(symbol: str, start: int, end: int) -> pl.DataFrame:
    """The bundled candles of ``symbol`` with start <= ts < end: what the lake must hold."""
    df = read_candles(BUNDLED_DATA / f"{symbol.replace('/', '_')}-1h.parquet")
    df = df.with_columns(pl.col("date").dt.epoch("ms").alias("ts")).select(
        "ts", "open", "high", "low", "close", "volume"
    )
    return df.filter((pl.col("ts") >= start) & (pl.col("ts") < end))


def lake_candles(lake, symbol: str) -> pl.DataFrame:
    df = lake.read("candle", exchange="binance", symbol=symbol, timeframe="1h")
    if df.is_empty():
        return pl.DataFrame(
            schema={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")} | {"ts": pl.Int64}
        )
    return df.select("ts", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def server() -> Iterator[ExchangeServer]:
    with ExchangeServer(symbols=SYMBOLS) as srv:
        yield srv


@pytest.fixture
def srv(server: ExchangeServer) -> ExchangeServer:
    server.reset()
    return server
