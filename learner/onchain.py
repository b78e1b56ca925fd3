"""Onchain features for the learner's feature hook: real daily history, and hourly aggregates from the lake.

Both classes implement the ``OnchainSource`` protocol the hook calls::

    names: list[str]
    features(times_ms: np.ndarray[int64, (T,)]) -> np.ndarray[float32, (T, F)]

For each hourly bar (open time ``t``, closing at ``t + 1h``) a row holds only values known strictly before the
bar closes, normalised so that level shifts from protocol changes (EIP-1559, the Merge, gas-limit raises,
halvings) do not dominate: each series is a rolling z-score of its log level over a trailing window (signed
series: of the value itself). NaN where nothing is known yet or the data stopped (stale beyond a limit).

- :class:`DailyHistory` reads a directory of daily Parquet files laid out like ``shared/data/onchain_daily``
  (one file per source, a ``date`` column = the UTC day described). Day D is usable from D+1 00:00 UTC, never
  earlier: a bar opening at D 23:00 closes exactly at D+1 00:00, so it does not see day D.
- :class:`LakeHourly` aggregates the lake's chain tables per UTC hour; hour H is complete at H+1h, so the bar
  opening at ``t`` sees hours up to ``t - 1h``.

>>> src = DailyHistory("../shared/data/onchain_daily")  # doctest: +SKIP
>>> src.features(np.array([1_700_000_000_000], dtype=np.int64)).shape  # doctest: +SKIP
(1, 36)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from continuum.labels import addresses_in
from continuum.lake import Lake

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Coin Metrics restates exchange flows and its exchange coverage jumps in 2019 (shared data README):
# what is in the file today was not known then. Prices and market caps duplicate the market features.
LOOKAHEAD_PRONE = {"FlowInExNtv", "FlowInExUSD", "FlowOutExNtv", "FlowOutExUSD", "SplyExNtv", "SplyExUSD"}
MARKET_DUPLICATES = {
    "PriceUSD", "CapMrktCurUSD", "CapMrktEstUSD", "CapMVRVCur", "ROI1yr", "ROI30d", "IssTotUSD",
    "volume_reported_spot_usd_1d", "ether_price_usd", "gas_price_avg_wei",  # (wei: same as the gwei column)
}  # fmt: skip
# series that stop before the end of the history: a feature that silently vanishes misleads the learner
STOPPED_FILES = {"eth_etherscan_daily_active_addresses", "stablecoin_onchain_coinmetrics_daily"}

STABLECOINS = {
    "0xdac17f958d2ee523a2206206994597c13d831ec7": "USDT",
    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": "USDC",
}
LARGE_ETH = 100.0  # native ETH transfers at least this large count as "large"
LARGE_STABLE = 1_000_000.0  # USDT/USDC transfers at least this large count as "large"


def _rolling_z(x: pl.Expr, window: int, min_periods: int) -> pl.Expr:
    """(x - trailing mean) / trailing std over the last ``window`` rows, current row included (causal)."""
    m = x.rolling_mean(window, min_samples=min_periods)
    s = x.rolling_std(window, min_samples=min_periods)
    return pl.when(s > 0).then((x - m) / s).otherwise(None)


def _normalise(df: pl.DataFrame, cols: list[str], window: int, min_periods: int) -> pl.DataFrame:
    """Rolling z-score of log levels (positive series) or raw values (series with negatives); rows in time order."""
    exprs = []
    for c in cols:
        col = pl.col(c).cast(pl.Float64)
        signed = bool((df[c].drop_nulls() < 0).any())
        base = col if signed else pl.when(col > 0).then(col.log1p()).otherwise(None if not (df[c] == 0).any() else 0.0)
        exprs.append(_rolling_z(base, window, min_periods).fill_nan(None).alias(c))
    return df.with_columns(exprs)


def _asof(times_ms: np.ndarray, avail: pl.DataFrame, names: list[str], tolerance_ms: int) -> np.ndarray:
    """For each time, the newest row with ``avail_ms <= time`` (within tolerance), as float32 (T, F)."""
    t = pl.DataFrame({"t": np.asarray(times_ms, dtype=np.int64)}).with_row_index("i")
    j = t.sort("t").join_asof(avail.sort("avail_ms"), left_on="t", right_on="avail_ms", strategy="backward",
                              tolerance=tolerance_ms)  # fmt: skip
    j = j.sort("i")
    if not names:
        return np.zeros((len(t), 0), dtype=np.float32)
    return j.select(names).to_numpy().astype(np.float32, copy=False)


class DailyHistory:
    """Daily onchain series from a directory of Parquet files, joined causally to hourly bars.

    ``window`` (days) sets the rolling z-score; values older than ``max_stale_days`` are NaN rather than carried.
    Long-format files (an ``asset`` column) are pivoted to one column per asset.
    """

    def __init__(
        self,
        directory: str | Path,
        window: int = 30,
        max_stale_days: int = 3,
        exclude_files: set[str] | None = None,
    ):
        self.directory = Path(directory)
        files = sorted(self.directory.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no daily Parquet files in {self.directory}")
        skip = STOPPED_FILES if exclude_files is None else exclude_files
        frames: list[pl.DataFrame] = []
        for f in files:
            if f.stem in skip:
                continue
            df = pl.read_parquet(f)
            if "date" not in df.columns:
                continue
            if "asset" in df.columns:
                df = df.pivot(on="asset", index="date", aggregate_function="first")
            keep = [c for c in df.columns if c != "date" and c not in LOOKAHEAD_PRONE | MARKET_DUPLICATES]
            keep = [c for c in keep if df[c].dtype.is_numeric()]
            df = df.select(pl.col("date").cast(pl.Date), *keep).sort("date").unique("date", keep="last")
            df = df.sort("date").upsample("date", every="1d")  # gaps stay null, never forward-filled here
            df = _normalise(df, keep, window, max(5, window // 3))
            frames.append(df.rename({c: f"{f.stem}.{c}" for c in keep}))
        merged = frames[0]
        for df in frames[1:]:
            merged = merged.join(df, on="date", how="full", coalesce=True)
        merged = merged.sort("date")
        self.names: list[str] = [c for c in merged.columns if c != "date"]
        # day D becomes known at D+1 00:00 UTC
        self._avail = merged.with_columns(
            ((pl.col("date").cast(pl.Datetime("ms")).cast(pl.Int64)) + DAY_MS).alias("avail_ms")
        ).drop("date")
        self._tolerance = (max_stale_days + 1) * DAY_MS

    def features(self, times_ms: np.ndarray) -> np.ndarray:
        """(T, F) float32: for bar open time t, the newest day D with D+1 00:00 <= t."""
        return _asof(times_ms, self._avail, self.names, self._tolerance)


class LakeHourly:
    """Hourly onchain aggregates of one chain from the lake's block, transfer and swap tables.

    Per UTC hour: transactions, gas used, mean base fee; USDT+USDC transfer volume; native-ETH exchange
    inflow/outflow/netflow (labelled exchange wallets, :mod:`continuum.labels`); large transfers; DEX swap
    count and stablecoin-side swap volume; transfers touching sanctioned or mixer addresses. Hours without
    any block in the lake are unknown (NaN), not zero. Normalised by a rolling z-score over ``window`` hours.
    """

    RAW = (
        "tx_count", "gas_used", "base_fee_gwei", "stable_volume", "exch_in_eth", "exch_out_eth", "exch_net_eth",
        "large_transfers", "swap_count", "swap_stable_volume", "risky_touches",
    )  # fmt: skip

    def __init__(self, lake: Lake, chain: str = "ethereum", window: int = 168, max_stale_hours: int = 3):
        self.lake, self.chain, self.window = lake, chain, window
        self._tolerance = max_stale_hours * HOUR_MS
        self.names: list[str] = [f"onchain.{c}" for c in self.RAW]

    def hourly(self) -> pl.DataFrame:
        """Raw (unnormalised) hourly aggregates with an ``hour`` column (UTC ms of the hour's start)."""
        hour = (pl.col("ts") // HOUR_MS * HOUR_MS).alias("hour")
        blocks = self.lake.scan("block", chain=self.chain)
        if not blocks.collect_schema().names():
            return pl.DataFrame(schema={"hour": pl.Int64, **{c: pl.Float64 for c in self.RAW}})
        b = blocks.group_by(hour).agg(
            pl.col("tx_count").sum().cast(pl.Float64),
            pl.col("gas_used").sum().cast(pl.Float64),
            pl.col("base_fee_gwei").mean().cast(pl.Float64),
        )
        out = b.collect()
        exch = addresses_in("exchange").implode()
        risky = addresses_in("sanctioned", "mixer").implode()
        tr = self.lake.scan("transfer", chain=self.chain)
        if tr.collect_schema().names():
            native = pl.col("token").is_null()
            stable = pl.col("token").is_in(list(STABLECOINS))
            to_ex, from_ex = pl.col("to_address").is_in(exch), pl.col("from_address").is_in(exch)
            t = tr.group_by(hour).agg(
                pl.col("value").filter(stable).sum().alias("stable_volume"),
                pl.col("value").filter(native & to_ex & ~from_ex).sum().alias("exch_in_eth"),
                pl.col("value").filter(native & from_ex & ~to_ex).sum().alias("exch_out_eth"),
                ((native & (pl.col("value") >= LARGE_ETH)) | (stable & (pl.col("value") >= LARGE_STABLE)))
                .sum()
                .cast(pl.Float64)
                .alias("large_transfers"),
                (pl.col("to_address").is_in(risky) | pl.col("from_address").is_in(risky))
                .sum()
                .cast(pl.Float64)
                .alias("risky_touches"),
            )
            out = out.join(t.collect(), on="hour", how="left")
        sw = self.lake.scan("swap", chain=self.chain)
        if sw.collect_schema().names():
            stables = list(STABLECOINS)
            vol = (
                pl.when(pl.col("token_in").is_in(stables))
                .then(pl.col("amount_in"))
                .when(pl.col("token_out").is_in(stables))
                .then(pl.col("amount_out"))
                .otherwise(0.0)
            )
            s = sw.group_by(hour).agg(
                pl.len().cast(pl.Float64).alias("swap_count"), vol.sum().alias("swap_stable_volume")
            )
            out = out.join(s.collect(), on="hour", how="left")
        for c in self.RAW:
            if c not in out.columns:
                out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
        counts = [c for c in self.RAW if c not in ("base_fee_gwei",)]
        out = out.with_columns([pl.col(c).fill_null(0.0) for c in counts])  # an hour with blocks: no event = 0
        out = out.with_columns((pl.col("exch_in_eth") - pl.col("exch_out_eth")).alias("exch_net_eth"))
        # complete hourly grid; hours with no block stay null (unknown)
        grid = pl.DataFrame({"hour": np.arange(out["hour"].min(), out["hour"].max() + HOUR_MS, HOUR_MS)})
        return grid.join(out, on="hour", how="left").select("hour", *self.RAW).sort("hour")

    def features(self, times_ms: np.ndarray) -> np.ndarray:
        """(T, F) float32: for bar open time t, hour ``t - 1h`` (complete before the bar closes) and earlier."""
        h = self.hourly()
        if h.is_empty():
            return np.full((len(times_ms), len(self.names)), np.nan, dtype=np.float32)
        z = _normalise(h, list(self.RAW), self.window, max(6, self.window // 8))
        z = z.rename({c: f"onchain.{c}" for c in self.RAW})
        avail = z.with_columns((pl.col("hour") + HOUR_MS).alias("avail_ms")).drop("hour")
        # hour H is known at H+1h; bar t closes at t+1h; strictly before it means H+1h <= t
        return _asof(np.asarray(times_ms, dtype=np.int64), avail, self.names, self._tolerance)


def source_from_arg(arg: str | None, lake_root: str | Path, chain: str = "ethereum"):
    """``--onchain`` on the command line: ``none``/empty, ``lake`` (live hourly aggregates from the lake's
    chain tables) or a directory of daily history laid out like ``shared/data/onchain_daily``."""
    from continuum.errors import UserError

    if not arg or arg == "none":
        return None
    if arg == "lake":
        return LakeHourly(Lake(lake_root), chain)
    if not Path(arg).is_dir():
        raise UserError(f"--onchain {arg!r}: expected 'lake', 'none' or a directory of daily onchain Parquet files")
    return DailyHistory(arg)
