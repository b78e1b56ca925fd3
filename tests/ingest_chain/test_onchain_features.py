"""Onchain features are causal: changing data at or after the moment it becomes known never moves an earlier bar.

Each test perturbs the *future* and checks the past is unchanged, and checks the exact first bar that sees a value.

The daily history is generated here, in the layout of ``shared/data/onchain_daily`` (one Parquet file per source,
the same file names, ``date`` column and column names and types, a long-format file with an ``asset`` column):
the real series are Coin Metrics (CC BY-NC), Etherscan and DefiLlama data that may not be republished, so the
repository cannot carry them. The generated series have what the loader must cope with: raw levels in the
millions with protocol-change level shifts, leading zeros, late-starting and stopped series, signed series,
scattered nulls and a gap of missing days.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from continuum.lake import Lake
from continuum.schema import Block, Transfer
from learner.onchain import DAY_MS, HOUR_MS, DailyHistory, LakeHourly

BINANCE_HOT = "0x28c6c06298d514db089934071355e5743bf21d60"  # Etherscan: Binance 14 (exchange)
TORNADO = "0x910cbd523d972eb0a6f4cae4618ad62622b39dbf"

# The sources of shared/data/onchain_daily (README there): file -> (first day, last day, {column: kind}).
# kinds: "int" / "float" a positive level (Int64 / Float64), "cum" a running total, "signed" a flow of either sign.
END = date(2024, 6, 30)
DAILY_SOURCES: dict[str, tuple[date, date, dict[str, str]]] = {
    "eth_etherscan_daily_core": (date(2015, 7, 30), END, {
        "tx_count": "int", "gas_used_total": "int", "gas_limit_avg": "int", "gas_price_avg_wei": "int",
        "ether_price_usd": "float", "gas_price_avg_gwei": "float"}),
    "eth_etherscan_daily_activity": (date(2015, 7, 30), END, {
        "erc20_transfer_count": "int", "address_count_cum": "cum", "new_addresses": "int",
        "avg_tx_fee_usd": "float", "avg_block_size_bytes": "int", "eth_supply": "cum"}),
    "eth_etherscan_daily_active_addresses": (date(2015, 7, 30), date(2024, 5, 31), {
        "active_addresses": "int", "active_addresses_receiving": "int", "active_addresses_sending": "int",
        "erc20_active_addresses": "int", "erc20_active_addresses_receiving": "int",
        "erc20_active_addresses_sending": "int"}),
    "eth_etherscan_daily_burnt": (date(2021, 8, 6), date(2023, 6, 17), {"eth_burnt": "float"}),
    "btc_coinmetrics_daily": (date(2009, 1, 3), END, {
        **dict.fromkeys(["AdrActCnt", "AdrBalCnt", "BlkCnt", "CapMVRVCur", "CapMrktCurUSD", "CapMrktEstUSD",
                         "FeeTotNtv", "FlowInExNtv", "FlowInExUSD", "FlowOutExNtv", "FlowOutExUSD", "HashRate",
                         "IssTotNtv", "IssTotUSD", "PriceUSD"], "float"),
        "ROI1yr": "signed", "ROI30d": "signed", "SplyCur": "cum",
        **dict.fromkeys(["SplyExNtv", "SplyExUSD", "SplyExpFut10yr", "TxCnt", "TxTfrCnt",
                         "volume_reported_spot_usd_1d"], "float")}),
    "stablecoin_supply_defillama_daily": (date(2017, 11, 29), END, {
        "usdt_circulating_usd": "float", "usdc_circulating_usd": "float", "dai_circulating_usd": "float",
        "usdt_net_issuance_usd": "signed", "usdc_net_issuance_usd": "signed", "dai_net_issuance_usd": "signed"}),
    "defillama_totals_daily": (date(2017, 9, 27), END, {
        "defi_tvl_usd": "float", "stablecoin_total_supply_usd": "float",
        "stablecoin_total_net_issuance_usd": "signed"}),
    "stablecoin_onchain_coinmetrics_daily": (date(2014, 10, 6), date(2021, 12, 29), dict.fromkeys([
        "SplyCur", "IssTotNtv", "TxCnt", "TxTfrCnt", "TxTfrValAdjUSD", "TxTfrValMeanUSD", "TxTfrValMedUSD",
        "AdrActCnt", "AdrBalCnt", "AdrBalUSD1MCnt", "SplyAdrTop100", "SplyAdrTop1Pct", "VelCur1yr"], "float")),
}  # fmt: skip
LONG_FORMAT = {"stablecoin_onchain_coinmetrics_daily": ("usdt", "usdc", "dai", "usdt_eth")}  # one row per asset
STOPPED = {"eth_etherscan_daily_active_addresses", "stablecoin_onchain_coinmetrics_daily"}  # end before the rest
# halvings, gas-limit raises, EIP-1559, the Merge: the raw levels jump on these days
SHIFTS = [date(2012, 11, 28), date(2016, 7, 9), date(2017, 12, 1), date(2020, 5, 11), date(2021, 8, 5),
          date(2022, 9, 15), date(2024, 4, 20)]  # fmt: skip
# what the loader must never feed: look-ahead-prone exchange flows and market-price duplicates
DROPPED = {
    "FlowInExNtv", "FlowInExUSD", "FlowOutExNtv", "FlowOutExUSD", "SplyExNtv", "SplyExUSD",
    "PriceUSD", "CapMrktCurUSD", "CapMrktEstUSD", "CapMVRVCur", "ROI1yr", "ROI30d", "IssTotUSD",
    "volume_reported_spot_usd_1d", "ether_price_usd", "gas_price_avg_wei",
}  # fmt: skip


def _series(rng: np.random.Generator, days: pl.Series, kind: str) -> np.ndarray:
    """One synthetic daily series: a log random walk around 1e3..1e7 with level shifts, or a signed flow."""
    n = len(days)
    if kind == "signed":
        return rng.standard_normal(n) * 10 ** rng.uniform(1, 8) * np.where(rng.random(n) < 0.02, 20.0, 1.0)
    level = np.cumsum(rng.normal(0.002, 0.05, n)) + np.log(10 ** rng.uniform(3, 7))
    for d in SHIFTS:
        level[days.to_numpy() >= np.datetime64(d)] += rng.uniform(-0.7, 0.7)
    x = np.exp(level)
    if kind == "cum":
        return np.cumsum(x)
    x[: rng.integers(0, 40)] = 0.0  # a new chain or token: nothing happened yet
    return x


def write_daily_history(directory: Path, seed: int = 7) -> Path:
    """Generated daily onchain history laid out like shared/data/onchain_daily (see the module docstring)."""
    rng = np.random.default_rng(seed)
    for name, (first, last, cols) in DAILY_SOURCES.items():
        frames = []
        for asset in LONG_FORMAT.get(name, (None,)):
            start = first + timedelta(days=int(rng.integers(0, 400))) if asset else first
            days = pl.date_range(start, last, "1d", eager=True)
            data: dict[str, object] = {"date": days}
            if asset:
                data["asset"] = asset
            for c, kind in cols.items():
                x = _series(rng, days, kind)
                if kind == "int" or (kind == "cum" and c == "address_count_cum"):  # Etherscan's integer columns
                    s = pl.Series(c, np.round(x)).cast(pl.Int64)
                elif rng.random() < 0.5:  # float columns: scattered missing values, some start late
                    mask = (rng.random(len(days)) < 0.01) | (np.arange(len(days)) < rng.integers(0, 300))
                    s = pl.Series(c, x).scatter(np.flatnonzero(mask), None)
                else:
                    s = pl.Series(c, x)
                data[c] = s
            frames.append(pl.DataFrame(data))
        df = pl.concat(frames)
        if name == "defillama_totals_daily":  # a few days the source never published
            df = df.filter(~pl.col("date").is_between(date(2020, 3, 10), date(2020, 3, 13)))
        df.sort("date").write_parquet(directory / f"{name}.parquet")
    return directory


@pytest.fixture(scope="module")
def daily_dir(tmp_path_factory) -> Path:
    return write_daily_history(tmp_path_factory.mktemp("onchain_daily"))


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


def test_daily_history_drops_lookahead_columns_and_is_normalised(daily_dir):
    src = DailyHistory(daily_dir)
    assert not {n.split(".", 1)[1] for n in src.names} & DROPPED
    want = {f"{f}.{c}" for f, (*_, cols) in DAILY_SOURCES.items() if f not in STOPPED for c in cols if c not in DROPPED}
    assert set(src.names) == want  # every other numeric column, prefixed by its file; stopped series left out
    t = np.arange(1_514_764_800_000, 1_719_705_600_000, 24 * HOUR_MS, dtype=np.int64)  # 2018..2024-06
    f = src.features(t)
    assert f.shape == (len(t), len(src.names)) and f.dtype == np.float32
    finite = f[np.isfinite(f)]
    assert finite.size > f.size // 2
    assert np.abs(finite).max() < 10  # z-scores, not raw counts (tx counts would be ~1e6)
    # a long-format file (one row per asset) is pivoted to one column per asset when it is used
    every = DailyHistory(daily_dir, exclude_files=set())
    long_cols = [n for n in every.names if n.startswith("stablecoin_onchain_coinmetrics_daily.")]
    assert len(long_cols) == len(DAILY_SOURCES["stablecoin_onchain_coinmetrics_daily"][2]) * 4


def test_daily_truncated_future_leaves_the_past_identical(daily_dir, tmp_path):
    out = tmp_path / "cut"
    out.mkdir()
    cut = date(2022, 1, 1)
    for f in daily_dir.glob("*.parquet"):
        pl.read_parquet(f).filter(pl.col("date") < cut).write_parquet(out / f.name)
    t = np.arange(1_609_459_200_000, 1_640_995_200_000 + DAY_MS, 6 * HOUR_MS, dtype=np.int64)  # 2021
    full, trunc = DailyHistory(daily_dir), DailyHistory(out)
    assert full.names == trunc.names
    np.testing.assert_array_equal(full.features(t), trunc.features(t))
    assert np.isfinite(full.features(t)).any()


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
