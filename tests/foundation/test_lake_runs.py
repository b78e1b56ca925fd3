"""The transfer table's sorted runs: every copy sorted by its address in small row groups, disjoint time ranges,
idempotent appends, binary-counter compaction, deletes, and partitions written before runs existed."""

from __future__ import annotations

import random

import polars as pl
import pyarrow.parquet as pq
import pytest

import continuum.lake as lake_mod
from continuum.lake import Lake

T0 = 1_700_000_000_000  # 2023-11-14: every row below lands in the month partition 2023-11
ADDRS = [f"0x{i:040x}" for i in range(50)]


def _transfers(n: int, seed: int, t0: int = T0) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "chain": ["ethereum"] * n,
            "block_number": list(range(n)),
            "block_hash": ["0x" + "b" * 64] * n,
            "ts": [t0 + 1000 * i for i in range(n)],
            "tx_hash": [f"0x{seed:032x}{i:032x}" for i in range(n)],
            "log_index": [0] * n,
            "token": [None] * n,
            "symbol": ["ETH"] * n,
            "from_address": [rng.choice(ADDRS) for _ in range(n)],
            "to_address": [rng.choice(ADDRS) for _ in range(n)],
            "value": [float(i) for i in range(n)],
            "raw_value": [str(i * 10**18) for i in range(n)],
        },
        schema_overrides={"token": pl.String},
    )


def _runs(root) -> list:
    return sorted(root.rglob("run=*"))


@pytest.fixture
def small(monkeypatch):
    """Tiny runs and row groups, so a few hundred rows exercise splits, compaction and row-group pruning."""
    monkeypatch.setattr(lake_mod, "ROW_GROUP_ROWS", 8)
    monkeypatch.setattr(lake_mod, "RUN_ROWS", 200)


def test_runs_are_sorted_disjoint_and_idempotent(tmp_path, small):
    lake = Lake(tmp_path)
    df = _transfers(500, seed=1)
    for i in range(0, 500, 50):  # ten appends in time order, like a follower at the chain head
        assert lake.append("transfer", df.slice(i, 50)) == 50
    assert lake.append("transfer", df) == 0  # everything again: nothing new
    ranges = []
    for run in _runs(tmp_path):
        by_from, by_to = pl.read_parquet(run / "data.parquet"), pl.read_parquet(run / "by_to_address.parquet")
        assert by_from.select("from_address", "ts").equals(
            by_from.select("from_address", "ts").sort("from_address", "ts")
        )
        assert by_to.select("to_address", "ts").equals(by_to.select("to_address", "ts").sort("to_address", "ts"))
        assert by_from.sort("tx_hash").equals(by_to.sort("tx_hash"))  # two orders of the same rows
        assert by_from.height <= 200 and pq.ParquetFile(run / "data.parquet").num_row_groups > 1
        ranges.append((by_from["ts"].min(), by_from["ts"].max()))
    ranges.sort()
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # disjoint time ranges
    # 500 rows in 50-row appends, merged while the run before is no larger, capped at 200 rows a run
    assert len(ranges) <= 5
    assert lake.read("transfer").equals(df.sort("chain", "tx_hash", "log_index"))


def test_old_range_merges_into_its_run_newest_wins(tmp_path, small):
    lake = Lake(tmp_path)
    df = _transfers(300, seed=2)
    lake.append("transfer", df)
    n_runs = len(_runs(tmp_path))
    fixed = df.slice(10, 5).with_columns(pl.col("value") * 100)
    fresh = _transfers(3, seed=3, t0=T0 + 1000 * 210 + 1)  # new rows inside the second run's time range
    assert lake.append("transfer", pl.concat([fixed, fresh])) == 3
    out = lake.read("transfer")
    assert out.height == 303 and out["tx_hash"].n_unique() == 303
    got = out.filter(pl.col("tx_hash").is_in(fixed["tx_hash"].implode())).sort("ts")["value"].to_list()
    assert got == fixed["value"].to_list()
    assert len(_runs(tmp_path)) == n_runs  # absorbed by the runs covering them, no new run


def test_scan_by_an_address_reads_the_sorted_copy(tmp_path, small):
    lake = Lake(tmp_path)
    df = _transfers(400, seed=4)
    lake.append("transfer", df)
    a = ADDRS[7]
    for col in ("from_address", "to_address"):
        got = lake.scan("transfer", by=col).filter(pl.col(col) == a).collect().sort("tx_hash")
        assert got.equals(df.filter(pl.col(col) == a).sort("tx_hash"))
        name = "data.parquet" if col == "from_address" else f"by_{col}.parquet"
        for run in _runs(tmp_path):  # the layout's promise: one address's rows sit in one or two row groups
            meta = pq.ParquetFile(run / name).metadata
            idx = meta.schema.to_arrow_schema().get_field_index(col)
            stats = [meta.row_group(i).column(idx).statistics for i in range(meta.num_row_groups)]
            assert meta.num_row_groups >= 5 and sum(s.min <= a <= s.max for s in stats) <= 2
    with pytest.raises(ValueError, match="sorted by"):
        lake.scan("transfer", by="token")


def test_delete_rewrites_every_copy(tmp_path, small):
    lake = Lake(tmp_path)
    df = _transfers(300, seed=5)
    lake.append("transfer", df)
    gone = pl.col("from_address") == ADDRS[3]
    assert lake.delete("transfer", gone) == df.filter(gone).height
    assert lake.read("transfer").height == df.height - df.filter(gone).height
    assert lake.scan("transfer", by="to_address").filter(gone).collect().is_empty()


def test_partition_written_before_runs_is_read_and_merged(tmp_path, small):
    lake = Lake(tmp_path)
    df = _transfers(100, seed=6)
    legacy = tmp_path / "kind=transfer" / "chain=ethereum" / "month=2023-11" / "data.parquet"
    legacy.parent.mkdir(parents=True)
    df.write_parquet(legacy)  # one natural-key file per month, as the lake wrote transfers before
    assert lake.scan("transfer", by="to_address").collect().height == 100
    assert lake.append("transfer", pl.concat([df.slice(0, 10), _transfers(5, seed=7, t0=T0 + 10**8)])) == 5
    assert lake.read("transfer").height == 105


def test_a_time_window_opens_only_the_runs_it_overlaps(tmp_path, small, monkeypatch):
    """Runs name their time range; a scan with ``start``/``end`` skips the others without reading their footers,
    and returns exactly the rows of the window."""
    from datetime import UTC, datetime

    lake = Lake(tmp_path)
    df = _transfers(600, seed=6)
    for i in range(0, 600, 50):
        lake.append("transfer", df.slice(i, 50))
    runs = _runs(tmp_path)
    assert len(runs) >= 3
    opened: list[str] = []
    real = lake_mod.pl.read_parquet_schema
    monkeypatch.setattr(lake_mod.pl, "read_parquet_schema", lambda p: opened.append(str(p)) or real(p))
    start, end = T0 + 1000 * 250, T0 + 1000 * 260  # ten rows inside one run
    got = lake.read(
        "transfer", start=datetime.fromtimestamp(start / 1000, UTC), end=datetime.fromtimestamp(end / 1000, UTC)
    )
    assert got.equals(
        df.filter(pl.col("ts").is_between(start, end, closed="left")).sort("chain", "tx_hash", "log_index")
    )
    assert len(opened) == 1 and len(opened) < len(runs)
