"""Onchain features are causal: changing data at or after the moment it becomes known never moves an earlier bar.

Each test perturbs the *future* and checks the past is unchanged, and checks the exact first bar that sees a value.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from continuum.lake import Lake
from continuum.schema import Block, Transfer
from learner.onchain import DAY_MS, HOUR_MS, DailyHistory, LakeHourly

SHARED_DAILY = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "onchain_daily"
BINANCE_HOT = "0x28c6c06298d514db089934071355e5743bf21d60"  # Etherscan: Binance 14 (exchange)
TORNADO = "0x910cbd523d972eb0a6f4cae4618ad62622b39dbf"


def _daily_dir(tmp_path, values: list[float], name: str = "x") -> tuple:
    days = pl.date_range(date(2021, 1, 1), date(2021, 1, 1) + timedelta(days=len(values) - 1), "1d", eager=True)
    d = tmp_path / name
    d.mkdir()
    pl.DataFrame({"date": days, "level": values}).write_parquet(d / "series.parquet")
    return d, days


def test_daily_value_is_used_from_the_next_day_never_earlier(tmp_path):
    vals = [100.0 + (i % 3) for i in range(40)]
    base_dir, days = _daily_dir(tmp_path, vals, "base")
    spiked = vals.copy()
    spiked[30] = 10_000.0  # day 30 spikes
    spike_dir, _ = _daily_dir(tmp_path, spiked, "spike")
    d30 = int(pl.Series([days[30]]).cast(pl.Datetime("ms")).cast(pl.Int64)[0])
    t = np.arange(d30 - 2 * DAY_MS, d30 + 2 * DAY_MS, HOUR_MS, dtype=np.int64)
    a, b = DailyHistory(base_dir).features(t), DailyHistory(spike_dir).features(t)
    differs = ~np.isclose(a[:, 0], b[:, 0], equal_nan=True)
    first = t[np.argmax(differs)]
    assert differs.any() and first == d30 + DAY_MS  # day D visible from D+1 00:00, the 23:00 bar of D does not see it
    assert not differs[t < d30 + DAY_MS].any()


def test_real_daily_history_drops_lookahead_columns_and_is_normalised():
    src = DailyHistory(SHARED_DAILY)
    dropped = {"FlowInExNtv", "FlowInExUSD", "FlowOutExNtv", "FlowOutExUSD", "SplyExNtv", "SplyExUSD", "PriceUSD"}
    assert not {n.split(".", 1)[1] for n in src.names} & dropped
    t = np.arange(1_514_764_800_000, 1_719_705_600_000, 24 * HOUR_MS, dtype=np.int64)  # 2018..2024-06
    f = src.features(t)
    assert f.shape == (len(t), len(src.names)) and f.dtype == np.float32
    finite = f[np.isfinite(f)]
    assert np.abs(finite).max() < 10  # z-scores, not raw counts (tx counts would be ~1e6)


def test_daily_truncated_future_leaves_the_past_identical(tmp_path):
    out = tmp_path / "cut"
    out.mkdir()
    cut = date(2022, 1, 1)
    for f in SHARED_DAILY.glob("*.parquet"):
        pl.read_parquet(f).filter(pl.col("date") < cut).write_parquet(out / f.name)
    t = np.arange(1_609_459_200_000, 1_640_995_200_000 + DAY_MS, 6 * HOUR_MS, dtype=np.int64)  # 2021
    full, trunc = DailyHistory(SHARED_DAILY), DailyHistory(out)
    assert full.names == trunc.names
    np.testing.assert_array_equal(full.features(t), trunc.features(t))


def _eth(n: int, block_hash: str, ts: int, tx: int, to: str, value: float) -> Transfer:
    return Transfer(
        chain="ethereum",
        block_number=n,
        block_hash=block_hash,
        ts=ts,
        tx_hash=f"0x{tx:064x}",
        log_index=-1,
        token=None,
        symbol="ETH",
        from_address=f"0x{n + 9:040x}",
        to_address=to,
        value=value,
        raw_value=str(int(value * 10**6)) + "0" * 12,
    )


def _lake_with_hours(tmp_path, name: str, extra_exchange_eth: float = 0.0) -> Lake:
    lake = Lake(tmp_path / name)
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    evs = []
    for i in range(24 * 10):  # 10 days, one block every 20 min
        for k in range(3):
            n = i * 3 + k
            ts = t0 + i * HOUR_MS + k * 1_200_000
            h = f"0x{n + 1:064x}"
            evs.append(Block(chain="ethereum", number=n, hash=h, parent_hash=f"0x{n:064x}", ts=ts,
                             tx_count=100 + n % 7, gas_used=10_000_000 + n, base_fee_gwei=20.0 + n % 5))  # fmt: skip
            value = 5.0 + (n % 4) + (extra_exchange_eth if i == 200 else 0.0)
            evs.append(_eth(n, h, ts, n + 7, BINANCE_HOT, value))
            if n % 5 == 0:
                evs.append(_eth(n, h, ts, n + 10**6, TORNADO, 10.0))
    lake.append_events(evs)
    return lake


def test_lake_hourly_is_causal_and_counts_exchange_and_mixer_flows(tmp_path):
    base = LakeHourly(_lake_with_hours(tmp_path, "a"))
    spiked = LakeHourly(_lake_with_hours(tmp_path, "b", extra_exchange_eth=5_000.0))
    raw = base.hourly()
    assert raw["exch_in_eth"].min() > 0 and raw["risky_touches"].sum() > 0 and raw["tx_count"].min() >= 300
    t0 = int(raw["hour"][0])
    spike_hour = t0 + 200 * HOUR_MS
    t = np.arange(t0, t0 + 240 * HOUR_MS, HOUR_MS, dtype=np.int64)
    a, b = base.features(t), spiked.features(t)
    col = base.names.index("onchain.exch_in_eth")
    differs = ~np.isclose(a[:, col], b[:, col], equal_nan=True)
    assert differs.any()
    assert t[np.argmax(differs)] == spike_hour + HOUR_MS  # the bar of the spike hour itself must not see it
    assert not differs[t <= spike_hour].any()
    assert np.isnan(a[0]).all()  # nothing known before the first hour completes
    assert np.nanmax(np.abs(a)) < 20


def test_lake_hourly_empty_lake_is_nan(tmp_path):
    src = LakeHourly(Lake(tmp_path / "empty"))
    f = src.features(np.array([1_700_000_000_000], dtype=np.int64))
    assert f.shape == (1, len(src.names)) and np.isnan(f).all()
