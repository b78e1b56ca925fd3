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


def test_signals_written_before_v2_read_with_the_new_columns_null(tmp_path):
    """2023 rows written without direction/weight/confidence (v1), 2024 rows with them: one scan has both,
    whichever partition comes first, and every row decodes as a Signal."""
    from learner.signals import frame_to_signals

    base = {
        "model": "hope",
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "ret_1h": 0.001,
        "ret_24h": 0.01,
        "vol_24h": 0.04,
        "ret_1h_std": 0.008,
        "ret_24h_std": 0.04,
        "regime": "calm",
        "activity": "{}",
    }
    v1 = pl.DataFrame([{**base, "ts": 1_700_000_000_000}])  # 2023
    v2 = pl.DataFrame([{**base, "ts": 1_710_000_000_000, "direction": "long", "weight": 0.05, "confidence": 0.2}])
    lake = Lake(tmp_path)
    lake.append("signal", v1)
    lake.append("signal", v2)
    df = lake.read("signal")
    assert df["weight"].to_list() == [None, 0.05] and df["direction"].to_list() == [None, "long"]
    old, new = frame_to_signals(df)
    assert (old.direction, old.weight, old.confidence) == ("", None, None)
    assert (new.direction, new.weight, new.confidence) == ("long", 0.05, 0.2)
    lake.append("signal", v2.with_columns(ts=pl.lit(1_700_000_000_000 + 3_600_000)))  # v2 into the v1 file
    assert lake.read("signal", symbol="BTC/USDT").height == 3


def test_a_column_null_in_every_row_is_written_with_its_fields_type(tmp_path):
    """A batch of transfers without labels: the label columns are strings in the Parquet file, not Null."""
    import pyarrow.parquet as pq

    from continuum.schema import Transfer

    t = Transfer(
        chain="ethereum", block_number=1, block_hash="0x" + "a" * 64, ts=1_700_000_000_000, tx_hash="0x" + "b" * 64,
        log_index=0, token=None, symbol=None, from_address="0x" + "1" * 40, to_address="0x" + "2" * 40,
        value=1.0, raw_value="1",
    )  # fmt: skip
    lake = Lake(tmp_path)
    lake.append_events([t])
    files = list(tmp_path.rglob("*.parquet"))
    assert files
    for f in files:
        schema = pq.read_schema(f)
        for name in ("token", "symbol", "from_label", "to_label"):
            assert str(schema.field(name).type) in ("string", "large_string"), (f.name, name, schema.field(name).type)
    assert lake.read("transfer")["to_label"].dtype == pl.String
