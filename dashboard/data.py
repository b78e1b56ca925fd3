"""Where the dashboard's data lives and how it is read (cached, re-read when the files change).

Paths come from the environment, set by ``continuum dashboard --lake/--eval-dir/--backtest-dir``
(or by hand before ``streamlit run dashboard/app.py``):

- ``CONTINUUM_DASHBOARD_LAKE``: the lake (signals, transfers); else ``CONTINUUM_LAKE__ROOT``; else ``.continuum/lake``
- ``CONTINUUM_DASHBOARD_EVAL_DIR``: a ``continuum evaluate --out`` directory (``evaluation.json``, ``errors.parquet``)
- ``CONTINUUM_DASHBOARD_BACKTEST_DIR``: a ``continuum backtest --out`` directory (``backtest.json``, ``equity.parquet``)
- ``CONTINUUM_DASHBOARD_REFRESH``: seconds between the Signals page's re-reads of the lake (default 5; 0: never)

Every loader returns ``None`` when its data is absent, so pages can show what command fills them.
Cache keys include a stamp of the files (how many, their sizes, the newest modification time): a file a learner
appends, adds or deletes changes it, and the next rerun reads the lake again; an unchanged lake costs one
directory walk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import streamlit as st

DEFAULT_LAKE = ".continuum/lake"
DEFAULT_EVAL_DIR = ".continuum/demo/eval"
DEFAULT_BACKTEST_DIR = ".continuum/demo"
DEFAULT_REFRESH_S = 5.0


def lake_root() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_LAKE") or os.environ.get("CONTINUUM_LAKE__ROOT") or DEFAULT_LAKE)


def eval_dir() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_EVAL_DIR") or DEFAULT_EVAL_DIR)


def backtest_dir() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_BACKTEST_DIR") or DEFAULT_BACKTEST_DIR)


def refresh_seconds() -> float:
    """How often the live parts of a page re-read the lake (``CONTINUUM_DASHBOARD_REFRESH``); 0 turns it off."""
    raw = os.environ.get("CONTINUUM_DASHBOARD_REFRESH", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_REFRESH_S
    except ValueError:
        return DEFAULT_REFRESH_S


Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp:
    """(files, bytes, newest mtime in ns) of the Parquet files under ``path`` ((0, 0, 0) if absent): part of every
    cache key. The lake rewrites a partition atomically on append (a new file, a new mtime and size), so an
    appended, added or deleted partition file changes the stamp."""
    if not path.exists():
        return (0, 0, 0)
    files = [path] if path.is_file() else list(path.rglob("*.parquet"))
    stats = [f.stat() for f in files]
    return (len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0))


# cache_resource, not cache_data: the frame is shared, not unpickled on every rerun (a demo's lake is ~10^5 rows
# and the Signals page reruns every few seconds); polars frames are never changed in place, so sharing is safe
@st.cache_resource(show_spinner=False, max_entries=2)
def _signals(root: str, stamp: Stamp) -> pl.DataFrame | None:
    from continuum.lake import Lake

    lf = Lake(root).scan("signal")
    if not lf.collect_schema().names():
        return None
    return lf.collect().with_columns(pl.from_epoch("ts", time_unit="ms").alias("time"))


def signals() -> pl.DataFrame | None:
    """All signals in the lake with a ``time`` column (datetime), or None."""
    root = lake_root()
    return _signals(str(root), _stamp(root / "kind=signal"))


def activity_long(sig: pl.DataFrame) -> pl.DataFrame:
    """The signals' ``activity`` JSON as a long frame ``time, key, value`` (whatever keys the model wrote)."""
    import io

    empty = pl.DataFrame(schema={"time": pl.Datetime("ms"), "key": pl.String, "value": pl.Float64})
    texts = sig["activity"].fill_null("{}")
    if sig.is_empty() or (texts == "{}").all():
        return empty
    # read_ndjson infers the keys (json_decode needs a dtype known in advance, and models differ in keys)
    wide = pl.read_ndjson(io.StringIO("\n".join(texts.to_list())), infer_schema_length=None)
    if not wide.columns:
        return empty
    return (
        wide.with_columns(pl.all().cast(pl.Float64))
        .with_columns(sig["time"])
        .unpivot(index="time", variable_name="key", value_name="value")
        .drop_nulls("value")
    )


ALERT_COLUMNS = {
    "ts": pl.Int64,
    "rule": pl.String,
    "symbol": pl.String,
    "severity": pl.String,
    "message": pl.String,
    "key": pl.String,
}


@st.cache_data(show_spinner=False, max_entries=2)
def _alerts(root: str, stamp: Stamp) -> pl.DataFrame | None:
    base = Path(root) / "kind=alert"
    files = sorted(base.rglob("*.parquet")) if base.is_dir() else []
    if not files:
        return None
    frames = [pl.read_parquet(f, hive_partitioning=False) for f in files]
    df = pl.concat(frames, how="diagonal_relaxed")
    df = df.with_columns(pl.lit(None, t).alias(c) for c, t in ALERT_COLUMNS.items() if c not in df.columns)
    return (
        df.select(pl.col(c).cast(t) for c, t in ALERT_COLUMNS.items())
        .unique("key", keep="last", maintain_order=True)
        .sort("ts", descending=True)
        .with_columns(pl.from_epoch("ts", time_unit="ms").alias("time"))
    )


def alerts() -> pl.DataFrame | None:
    """The lake's ``alert`` table (``continuum alerts`` writes it: ``ts`` in ms, ``rule``, ``symbol``, ``severity``,
    ``message``, ``key``), newest first with a ``time`` column; None when there is none."""
    root = lake_root()
    return _alerts(str(root), _stamp(root / "kind=alert"))


@st.cache_data(show_spinner=False, max_entries=4)
def _json(path: str, stamp: Stamp) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


@st.cache_data(show_spinner=False, max_entries=4)
def _parquet(path: str, stamp: Stamp) -> pl.DataFrame | None:
    p = Path(path)
    if not p.is_file():
        return None
    return pl.read_parquet(p).with_columns(pl.from_epoch("ts", time_unit="ms").alias("time"))


def evaluation() -> tuple[dict | None, pl.DataFrame | None]:
    """``evaluation.json`` and ``errors.parquet`` from the evaluation directory (each None if absent)."""
    d = eval_dir()
    return _json(str(d / "evaluation.json"), _stamp(d / "evaluation.json")), _parquet(
        str(d / "errors.parquet"), _stamp(d / "errors.parquet")
    )


def backtest() -> tuple[dict | None, pl.DataFrame | None]:
    """``backtest.json`` and ``equity.parquet`` from the backtest directory (each None if absent)."""
    d = backtest_dir()
    return _json(str(d / "backtest.json"), _stamp(d / "backtest.json")), _parquet(
        str(d / "equity.parquet"), _stamp(d / "equity.parquet")
    )


@st.cache_data(show_spinner=False, max_entries=4)
def _tearsheet(path: str, stamp: Stamp, max_points: int) -> pl.DataFrame | None:
    from strategies.tearsheet import series

    p = Path(path)
    if not p.is_file():
        return None
    s = series(pl.read_parquet(p))
    # at most max_points per strategy for the browser: each bucket keeps its deepest drawdown, its last rolling
    # Sharpe and cost total, and its mean turnover, so thinning never hides a trough
    every = max(1, -(-s.group_by("strategy").len()["len"].max() // max_points))
    aggs = [pl.col("ts").first(), pl.col("drawdown").min(), pl.col("rolling_sharpe").last()]
    aggs += [pl.col("turnover_day").mean()] if "turnover_day" in s.columns else []
    aggs += [pl.col("cum_cost").last()] if "cum_cost" in s.columns else []
    return (
        s.with_columns((pl.int_range(pl.len()).over("strategy") // every).alias("bucket"))
        .group_by("strategy", "bucket", maintain_order=True)
        .agg(aggs)
        .drop("bucket")
        .with_columns(pl.from_epoch("ts", time_unit="ms").alias("time"))
    )


def tearsheet(max_points: int = 2000) -> pl.DataFrame | None:
    """The tearsheet's curves (:func:`strategies.tearsheet.series`) from ``equity.parquet``, thinned to at most
    ``max_points`` per strategy, with a ``time`` column; None without a backtest."""
    f = backtest_dir() / "equity.parquet"
    return _tearsheet(str(f), _stamp(f), max_points)


def regimes_frame(ev: dict | None) -> pl.DataFrame | None:
    """The evaluation's regimes as ``name, start, end`` datetimes (for shaded bands on time charts)."""
    if not ev or not ev.get("regimes"):
        return None
    return pl.DataFrame(ev["regimes"]).with_columns(
        pl.col("start").str.to_datetime(time_zone="UTC").dt.replace_time_zone(None),
        pl.col("end").str.to_datetime(time_zone="UTC").dt.replace_time_zone(None),
    )


def has_transfers() -> bool:
    return (lake_root() / "kind=transfer").is_dir()


def empty_state(what: str, commands: list[str]) -> None:
    """Explain an empty page: what is missing, where we looked, and the commands that fill it."""
    st.info(f"{what}\n\nRun:\n\n" + "\n\n".join(f"`{c}`" for c in commands))
