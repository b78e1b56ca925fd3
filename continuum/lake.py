"""The one lake: partitioned Parquet under one root, written and read with polars.

Layout::

    <root>/kind=candle/exchange=binance/symbol=BTC_USDT/timeframe=1h/year=2024/data.parquet
    <root>/kind=signal/model=hope/symbol=BTC_USDT/year=2024/data.parquet
    <root>/kind=transfer/chain=ethereum/month=2023-05/run=<first ts>_<last ts>_<id>/data.parquet
    <root>/kind=transfer/chain=ethereum/month=2023-05/run=<first ts>_<last ts>_<id>/by_to_address.parquet

Most kinds keep one leaf file per partition in natural-key order, rewritten atomically on append.

A kind that declares ``LAKE_SORTED`` (transfers: ``from_address``, ``to_address``) is laid out for queries by
those columns, in **sorted runs**. A month of mainnet transfers is ~50M rows: it can neither be rewritten on
every append (a block every 12 s) nor held in memory, and a forensics hop asks for the rows of a few hundred
addresses among all of them. So a partition holds runs with disjoint time ranges; each run is stored once per
sorted column (``data.parquet`` by the first, ``by_<col>.parquet`` by the others), sorted by (column, ts) in
small row groups with min/max statistics, so ``pl.col(col).is_in(frontier)`` reads about one row group per
address per run (:meth:`Lake.scan` with ``by=``). An append merges rows that fall in a run's time range into
that run (a transfer's ``ts`` is fixed, so a duplicate can only sit in the run covering it) and turns the rest
into a new run, which merges with the run before it while that one is no larger (binary-counter compaction:
each row is rewritten O(log n) times, a partition has O(log n) small runs), up to :data:`RUN_ROWS` rows.

Appends are idempotent: rows are merged with the existing rows and deduplicated on the event's natural key
(the newest write wins), so re-ingesting the same events leaves the same rows. Reads are lazy:
:meth:`Lake.scan` selects partition files from the path (kind, symbol, time range; a sorted run's directory
name carries its first and last ``ts``), then returns a ``LazyFrame`` with the remaining filters pushed into the
Parquet scan.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from continuum.atomic import replace_atomically
from continuum.schema import EVENT_TYPES, Event, field_types

# kind -> (partition columns in path order, time partition): declared by each event class (schema.LAKE)
PARTITIONS: dict[str, tuple[tuple[str, ...], str]] = {k: c.LAKE for k, c in EVENT_TYPES.items() if c.LAKE}
# kind -> columns it is kept sorted by, in runs (schema.LAKE_SORTED); the first one's copy is data.parquet
SORTED: dict[str, tuple[str, ...]] = {k: c.LAKE_SORTED for k, c in EVENT_TYPES.items() if c.LAKE and c.LAKE_SORTED}
ROW_GROUP_ROWS = 4096  # rows per row group of a sorted copy: one address's rows in a run span ~one group
RUN_ROWS = 4_000_000  # the largest run a merge writes (a merge holds ~2 runs in memory, ~1.5 GB per 4M transfers)
_lock = threading.Lock()


def _safe(v: object) -> str:
    return str(v).replace("/", "_").replace(":", "-")


def _time_part(ts_ms: int, unit: str) -> str:
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"{d.year}" if unit == "year" else f"{d.year}-{d.month:02d}"


def _time_part_expr(unit: str) -> pl.Expr:
    """:func:`_time_part` of every row at once (a Python call per row costs a minute per 100M transfers)."""
    d = pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms")
    return d.dt.strftime("%Y" if unit == "year" else "%Y-%m")


def natural_key(kind: str) -> list[str]:
    cls = EVENT_TYPES.get(kind)
    return list(cls.NATURAL_KEY) if cls else ["ts"]


# a field's base type (schema.field_types) -> its column's type; dict fields are stored as JSON text
_COLUMN_TYPES: dict[type, pl.DataType] = {str: pl.String, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}


def events_frame(events: Iterable[Event]) -> pl.DataFrame:
    """Events of one kind as a DataFrame with the schema's columns (dict fields become JSON text).

    A column that is null in every row of the batch (a transfer's labels, an old signal's weight) gets its
    field's type, not polars' Null type: a Parquet file with a Null column is read by some engines (Spark) only
    through their slow row reader, and unions with later files by the lake's schema merge alone."""
    import json

    rows, cls = [], None
    for e in events:
        cls = type(e)
        d = dataclasses.asdict(e)
        for k, v in d.items():
            if isinstance(v, dict):  # a signal's activity, an alert's detail: JSON text in the lake
                d[k] = json.dumps(v, sort_keys=True)
        rows.append(d)
    df = pl.DataFrame(rows, infer_schema_length=None)
    if cls is None:
        return df
    typed = {n: _COLUMN_TYPES.get(t, pl.String) for n, t in field_types(cls).items()}
    return df.cast({n: typed[n] for n, dt in df.schema.items() if dt == pl.Null and n in typed})


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
        df = df.with_columns(_time_part_expr(unit).alias("__part"))
        added = 0
        for group_key, part in df.group_by([*cols, "__part"], maintain_order=True):
            path = self._leaf(kind, dict(zip([*cols, "__part"], group_key, strict=True)), unit)
            part = part.drop("__part")
            with _lock:
                if kind in SORTED:
                    added += self._append_runs(kind, path.parent, part, key)
                    continue
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
                    if kind in SORTED:
                        run = _run_of(path)
                        self._replace_runs(kind, run.part_dir, [run], new)
                    elif new.is_empty():
                        path.unlink()
                    else:
                        _atomic_write(new, path)
        return removed

    # ------------------------------------------------------------------ sorted runs (see the module docstring)
    def _append_runs(self, kind: str, part_dir: Path, part: pl.DataFrame, key: list[str]) -> int:
        """Merge ``part`` into the runs of one partition; returns how many rows were new."""
        part = part.unique(subset=key, keep="last", maintain_order=True)
        runs = self._heal(kind, part_dir, key)
        added = 0
        for run in runs:  # rows inside a run's time range: merged into it (deduplicated against it)
            inside = pl.col("ts").is_between(run.lo, run.hi)
            mine = part.filter(inside)
            if mine.is_empty():
                continue
            part = part.filter(~inside)
            old = pl.read_parquet(run.data)
            merged = pl.concat([old, mine], how="diagonal_relaxed").unique(subset=key, keep="last", maintain_order=True)
            added += merged.height - old.height
            self._replace_runs(kind, part_dir, [run], merged)
        if part.is_empty():
            return added
        added += part.height
        runs = _runs(part_dir)
        # the rest: one new run per gap between existing runs, so time ranges stay disjoint
        gaps = pl.Series([r.lo for r in runs], dtype=pl.Int64).search_sorted(part["ts"].cast(pl.Int64), side="right")
        for (g,), rows in part.with_columns(gaps.alias("__gap")).group_by("__gap", maintain_order=True):
            rows = rows.drop("__gap")
            merge: list[_Run] = []
            while g > 0 and runs[g - 1].rows <= rows.height and runs[g - 1].rows + rows.height <= RUN_ROWS:
                g -= 1  # binary-counter compaction with the run just before
                merge.append(runs[g])
                rows = pl.concat([pl.read_parquet(runs[g].data), rows], how="diagonal_relaxed")
            self._replace_runs(kind, part_dir, merge, rows)
        return added

    def _heal(self, kind: str, part_dir: Path, key: list[str]) -> list[_Run]:
        """The partition's runs; runs whose time ranges overlap (a merge cut short by a crash) are merged first."""
        runs = _runs(part_dir)
        for a, b in zip(runs, runs[1:], strict=False):
            if b.lo <= a.hi:
                both = pl.concat([pl.read_parquet(a.data), pl.read_parquet(b.data)], how="diagonal_relaxed")
                self._replace_runs(kind, part_dir, [a, b], both.unique(subset=key, keep="last", maintain_order=True))
                return self._heal(kind, part_dir, key)
        return runs

    def _replace_runs(self, kind: str, part_dir: Path, old: list[_Run], df: pl.DataFrame) -> None:
        """Write ``df`` as run(s) of at most :data:`RUN_ROWS` rows, then drop the ``old`` runs it replaces.

        New files are complete before old ones go: a crash in between leaves overlapping runs (healed by the
        next append), never lost rows. Within a run, each copy is written before ``data.parquet``, whose presence
        is what makes the run visible."""
        if not df.is_empty():
            df = df.sort("ts")
            ts = df["ts"]
            start = 0
            while start < df.height:
                end = min(start + RUN_ROWS, df.height)
                while end < df.height and ts[end] == ts[end - 1]:
                    end += 1  # equal timestamps stay in one run (time ranges are disjoint)
                chunk = df.slice(start, end - start)
                self._write_run(kind, part_dir, chunk)
                start = end
        for run in old:
            run.drop()

    def _write_run(self, kind: str, part_dir: Path, df: pl.DataFrame) -> None:
        cols = SORTED[kind]
        run = part_dir / f"run={df['ts'].min()}_{df['ts'].max()}_{uuid.uuid4().hex[:8]}"
        for c in cols[1:]:
            _atomic_write(df.sort(c, "ts"), run / f"by_{c}.parquet", ROW_GROUP_ROWS)
        _atomic_write(df.sort(cols[0], "ts"), run / "data.parquet", ROW_GROUP_ROWS)

    # ------------------------------------------------------------------ reading
    def scan(
        self,
        kind: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        by: str | None = None,
        **equals: str,
    ) -> pl.LazyFrame:
        """Lazy frame of ``kind`` rows with ``start <= ts < end`` and column == value filters.

        Rows come in natural-key order. ``by``: one of the kind's ``LAKE_SORTED`` columns; the scan then reads
        the copy sorted by it, in storage order (no global sort), so a filter on that column (``==``,
        ``is_in``) skips every row group whose min/max rules it out.
        """
        if by is not None and by not in SORTED.get(kind, ()):
            raise ValueError(f"lake.scan({kind}, by={by!r}): {kind} is kept sorted by {SORTED.get(kind, ())}")
        files = self._files(kind, equals, start, end)
        if not files:
            return pl.LazyFrame()
        paths = [str(_copy(f, kind, by)) for f in files]
        lf = pl.scan_parquet(paths, schema=_union_schema(paths), missing_columns="insert", extra_columns="ignore")
        for k, v in equals.items():
            lf = lf.filter(pl.col(k) == v)
        if start is not None:
            lf = lf.filter(pl.col("ts") >= int(start.timestamp() * 1000))
        if end is not None:
            lf = lf.filter(pl.col("ts") < int(end.timestamp() * 1000))
        return lf if by is not None else lf.sort(natural_key(kind))

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
        lo_ms = None if start is None else int(start.timestamp() * 1000)
        hi_ms = None if end is None else int(end.timestamp() * 1000)
        out = []
        for f in sorted(base.rglob("data.parquet")):
            segs = dict(s.split("=", 1) for s in f.relative_to(base).parent.parts)
            if any(k in cols and segs.get(k) != _safe(v) for k, v in equals.items()):
                continue
            tp = segs.get(unit, "")
            if lo_ms is not None and tp and tp < _time_part(lo_ms, unit)[: len(tp)]:
                continue
            if hi_ms is not None and tp and tp > _time_part(hi_ms, unit)[: len(tp)]:
                continue
            # a sorted run names its time range: one outside [start, end) is skipped without opening it (a day's
            # scan of a month of runs reads the runs of that day, not every run's footer)
            if "run" in segs:
                run_lo, run_hi = _run_range(segs["run"])
                if (lo_ms is not None and run_hi < lo_ms) or (hi_ms is not None and run_lo >= hi_ms):
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


def _atomic_write(df: pl.DataFrame, path: Path, row_group_rows: int | None = None) -> None:
    with replace_atomically(path, fsync=False) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=row_group_rows)


@dataclasses.dataclass(frozen=True)
class _Run:
    """One sorted run: its ``data.parquet``, first and last ``ts``, row count."""

    data: Path
    lo: int
    hi: int
    rows: int

    @property
    def part_dir(self) -> Path:
        return self.data.parent.parent if self.data.parent.name.startswith("run=") else self.data.parent

    def drop(self) -> None:
        """``data.parquet`` first (the run leaves every listing at once), then its other copies."""
        self.data.unlink(missing_ok=True)
        if self.data.parent.name.startswith("run="):
            for f in self.data.parent.glob("*.parquet"):
                f.unlink()
            self.data.parent.rmdir()


def _run_range(name: str) -> tuple[int, int]:
    """First and last ``ts`` of a run from its directory name's value ``<first>_<last>_<id>`` (how
    :meth:`Lake._write_run` names it)."""
    lo, hi, _ = name.split("_")
    return int(lo), int(hi)


def _run_of(data: Path) -> _Run:
    name = data.parent.name
    rows = pl.scan_parquet(data).select(pl.len()).collect().item()
    if name.startswith("run="):
        return _Run(data, *_run_range(name[4:]), rows)
    # a partition written before runs existed (one data.parquet): its range from the rows
    lo, hi = (
        pl.scan_parquet(data).select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).collect().row(0)
    )
    return _Run(data, int(lo), int(hi), rows)


def _runs(part_dir: Path) -> list[_Run]:
    """A partition's runs in time order."""
    files = [
        *part_dir.glob("run=*/data.parquet"),
        *([part_dir / "data.parquet"] if (part_dir / "data.parquet").exists() else []),
    ]
    return sorted((_run_of(f) for f in files), key=lambda r: (r.lo, r.hi))


def _copy(data: Path, kind: str, by: str | None) -> Path:
    """The file of ``data``'s run sorted by ``by`` (``data.parquet`` itself for the first sorted column, and for a
    partition written before sorted copies existed)."""
    if by is None or by == SORTED[kind][0]:
        return data
    other = data.parent / f"by_{by}.parquet"
    return other if other.exists() else data
