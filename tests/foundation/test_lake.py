"""The lake: idempotent appends, partitioned layout, lazy time-range scans, deletes."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from continuum.lake import Lake, events_frame
from continuum.schema import Candle
from ingest.replay import load_panel, replay_events


def _candles(n=48, symbol="BTC/USDT"):
    p = load_panel(
        "data/binance",
        symbols=[symbol],
        start=datetime(2021, 12, 31, 12, tzinfo=UTC),
        end=datetime(2022, 1, 2, 12, tzinfo=UTC),
    )
    return list(replay_events(p))[:n]


def test_append_is_idempotent_and_partitioned(tmp_path):
    lake = Lake(tmp_path)
    ev = _candles()
    assert lake.append_events(ev) == len(ev)
    assert lake.append_events(ev) == 0  # re-ingesting the same candles adds nothing
    assert lake.append_events(ev[10:20]) == 0
    df = lake.read("candle")
    assert df.height == len(ev)
    assert df["ts"].is_sorted() and df["ts"].n_unique() == len(ev)
    years = sorted(p.parent.name for p in tmp_path.rglob("data.parquet"))
    assert years == ["year=2021", "year=2022"]  # the range crosses a year: two partitions


def test_newest_write_wins_on_the_natural_key(tmp_path):
    lake = Lake(tmp_path)
    ev = _candles(4)
    lake.append_events(ev)
    c = ev[0]
    fixed = Candle(c.exchange, c.symbol, c.timeframe, c.ts, c.open, c.high * 1.01, c.low, c.close, 999.0)
    assert lake.append_events([fixed]) == 0
    row = lake.read("candle").filter(pl.col("ts") == c.ts)
    assert row["volume"].item() == 999.0 and row.height == 1


def test_scan_by_symbol_and_time_range(tmp_path):
    lake = Lake(tmp_path)
    lake.append_events(_candles(48, "BTC/USDT") + _candles(48, "ETH/USDT"))
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, 6, tzinfo=UTC)
    lf = lake.scan("candle", start=start, end=end, symbol="ETH/USDT")
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    assert df.height == 6 and set(df["symbol"]) == {"ETH/USDT"}
    assert lake.last_ts("candle", symbol="BTC/USDT") == max(c.ts for c in _candles(48))
    assert lake.last_ts("trade") is None


def test_delete_and_events_frame(tmp_path):
    lake = Lake(tmp_path)
    ev = _candles(10)
    assert events_frame(ev).height == 10
    lake.append_events(ev)
    assert lake.delete("candle", pl.col("ts") >= ev[5].ts) == 5
    assert lake.read("candle").height == 5
