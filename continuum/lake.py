"""The one lake: partitioned Parquet under one root, written and read with polars.

Layout (one leaf file per partition, rewritten atomically on append)::

    <root>/kind=candle/exchange=binance/symbol=BTC_USDT/timeframe=1h/year=2024/data.parquet
    <root>/kind=transfer/chain=ethereum/month=2023-05/data.parquet
    <root>/kind=signal/model=hope/symbol=BTC_USDT/year=2024/data.parquet

Appends are idempotent: rows are merged with the partition's existing rows and deduplicated on the
event's natural key (the newest write wins), so re-ingesting the same candles leaves the same rows.
Reads are lazy: :meth:`Lake.scan` selects partition files from the path (kind, symbol, time range),
then returns a ``LazyFrame`` with the remaining filters pushed into the Parquet scan.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from continuum.atomic import replace_atomically
from continuum.schema import EVENT_TYPES, Event

# kind -> (partition columns in path order, time partition): declared by each event class (schema.LAKE)
PARTITIONS: dict[str, tuple[tuple[str, ...], str]] = {k: c.LAKE for k, c in EVENT_TYPES.items() if c.LAKE}
_lock = threading.Lock()


def _safe(v: object) -> str:
    return str(v).replace("/", "_").replace(":", "-")


def _time_part(ts_ms: int, unit: str) -> str:
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"{d.year}" if unit == "year" else f"{d.year}-{d.month:02d}"


def natural_key(kind: str) -> list[str]:
    cls = EVENT_TYPES.get(kind)
    return list(cls.NATURAL_KEY) if cls else ["ts"]


def events_frame(events: Iterable[Event]) -> pl.DataFrame:
    """Events of one kind as a DataFrame with the schema's columns (dict fields become JSON text)."""
    import json

    rows = []
    for e in events:
        d = dataclasses.asdict(e)
        for k, v in d.items():
            if isinstance(v, dict):  # a signal's activity, an alert's detail: JSON text in the lake
                d[k] = json.dumps(v, sort_keys=True)
        rows.append(d)
    return pl.DataFrame(rows, infer_schema_length=None)


class Lake:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ writing
    def append(self, kind: str, df: pl.DataFrame) -> int:
        """Merge ``df`` into the lake; returns how many rows were new. Idempotent."""
        if df.is_empty():
            return 0
        cols, unit = PARTITIONS[kind]
        key = natural_key(kind)
        missing = [c for c in (*cols, "ts", *key) if c not in df.columns]
        if missing:
            raise ValueError(f"lake.append({kind}): missing columns {missing}")
        df = df.with_columns(
            pl.col("ts")
            .cast(pl.Int64)
            .map_elements(lambda t: _time_part(t, unit), return_dtype=pl.String)
            .alias("__part")
        )
        added = 0
        for group_key, part in df.group_by([*cols, "__part"], maintain_order=True):
            path = self._leaf(kind, dict(zip([*cols, "__part"], group_key, strict=True)), unit)
            part = part.drop("__part")
            with _lock:
                if path.exists():
                    old = pl.read_parquet(path)
                    before = old.height
                    merged = pl.concat([old, part], how="diagonal_relaxed")
                else:
                    before = 0
                    merged = part
                merged = merged.unique(subset=key, keep="last", maintain_order=True).sort(key)
                added += merged.height - before
                _atomic_write(merged, path)
        return added

    def append_events(self, events: Iterable[Event]) -> int:
        by_kind: dict[str, list[Event]] = {}
        for e in events:
            by_kind.setdefault(e.KIND, []).append(e)
        return sum(self.append(k, events_frame(v)) for k, v in by_kind.items())

    def delete(self, kind: str, predicate: pl.Expr) -> int:
        """Drop rows matching ``predicate`` from every partition of ``kind`` (reorg retractions)."""
        removed = 0
        for path in self._files(kind, {}):
            with _lock:
                old = pl.read_parquet(path)
                new = old.filter(~predicate)
                if new.height != old.height:
                    removed += old.height - new.height
                    if new.is_empty():
                        path.unlink()
                    else:
                        _atomic_write(new, path)
        return removed

    # ------------------------------------------------------------------ reading
    def scan(
        self,
        kind: str,
        start: datetime | None = None,
        end: datetime | None = None,
        **equals: str,
    ) -> pl.LazyFrame:
        """Lazy frame of ``kind`` rows with ``start <= ts < end`` and column == value filters."""
        files = self._files(kind, equals, start, end)
        if not files:
            return pl.LazyFrame()
        paths = [str(f) for f in files]
        lf = pl.scan_parquet(paths, schema=_union_schema(paths), missing_columns="insert", extra_columns="ignore")
        for k, v in equals.items():
            lf = lf.filter(pl.col(k) == v)
        if start is not None:
            lf = lf.filter(pl.col("ts") >= int(start.timestamp() * 1000))
        if end is not None:
            lf = lf.filter(pl.col("ts") < int(end.timestamp() * 1000))
        return lf.sort(natural_key(kind))

    def read(self, kind: str, **kw) -> pl.DataFrame:
        return self.scan(kind, **kw).collect()

    def last_ts(self, kind: str, **equals: str) -> int | None:
        """Newest ``ts`` stored for these partition values (resumable backfills start after it)."""
        lf = self.scan(kind, **equals)
        if not lf.collect_schema().names():
            return None
        v = lf.select(pl.col("ts").max()).collect().item()
        return None if v is None else int(v)

    # ------------------------------------------------------------------ paths
    def _leaf(self, kind: str, values: dict, unit: str) -> Path:
        cols, _ = PARTITIONS[kind]
        parts = [f"kind={kind}"] + [f"{c}={_safe(values[c])}" for c in cols]
        parts.append(f"{unit}={values['__part']}")
        return self.root.joinpath(*parts, "data.parquet")

    def _files(self, kind: str, equals: dict, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
        base = self.root / f"kind={kind}"
        if not base.exists():
            return []
        cols, unit = PARTITIONS[kind]
        out = []
        for f in sorted(base.rglob("data.parquet")):
            segs = dict(s.split("=", 1) for s in f.relative_to(base).parent.parts)
            if any(k in cols and segs.get(k) != _safe(v) for k, v in equals.items()):
                continue
            tp = segs.get(unit, "")
            if start is not None and tp and tp < _time_part(int(start.timestamp() * 1000), unit)[: len(tp)]:
                continue
            if end is not None and tp and tp > _time_part(int(end.timestamp() * 1000), unit)[: len(tp)]:
                continue
            out.append(f)
        return out


def _union_schema(paths: list[str]) -> dict[str, pl.DataType]:
    """Every column of every file (footers only), so a column added to the schema later (a v2 signal field)
    is read from the files that have it and null in the older ones, whichever file comes first."""
    out: dict[str, pl.DataType] = {}
    for p in paths:
        for name, dtype in pl.read_parquet_schema(p).items():
            if out.get(name, pl.Null) == pl.Null:
                out[name] = dtype
    return out


def _atomic_write(df: pl.DataFrame, path: Path) -> None:
    with replace_atomically(path, fsync=False) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True)
