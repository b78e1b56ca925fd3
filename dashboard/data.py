"""Where the dashboard's data lives and how it is read (cached, re-read when the files change).

Paths come from the environment, set by ``continuum dashboard --lake/--eval-dir/--backtest-dir``
(or by hand before ``streamlit run dashboard/app.py``):

- ``CONTINUUM_DASHBOARD_LAKE``: the lake (signals, transfers); else ``CONTINUUM_LAKE__ROOT``; else ``.continuum/lake``
- ``CONTINUUM_DASHBOARD_EVAL_DIR``: a ``continuum evaluate --out`` directory (``evaluation.json``, ``errors.parquet``)
- ``CONTINUUM_DASHBOARD_BACKTEST_DIR``: a ``continuum backtest --out`` directory (``backtest.json``, ``equity.parquet``)

Every loader returns ``None`` when its data is absent, so pages can show what command fills them.
Cache keys include the files' modification times: a running learner's new signals show on the next rerun.
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


def lake_root() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_LAKE") or os.environ.get("CONTINUUM_LAKE__ROOT") or DEFAULT_LAKE)


def eval_dir() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_EVAL_DIR") or DEFAULT_EVAL_DIR)


def backtest_dir() -> Path:
    return Path(os.environ.get("CONTINUUM_DASHBOARD_BACKTEST_DIR") or DEFAULT_BACKTEST_DIR)


def _stamp(path: Path) -> float:
    """Newest modification time under ``path`` (0 if absent): part of every cache key."""
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_mtime
    return max((p.stat().st_mtime for p in path.rglob("*.parquet")), default=0.0)


@st.cache_data(show_spinner=False, max_entries=8)
def _signals(root: str, stamp: float) -> pl.DataFrame | None:
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


@st.cache_data(show_spinner=False, max_entries=4)
def _json(path: str, stamp: float) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


@st.cache_data(show_spinner=False, max_entries=4)
def _parquet(path: str, stamp: float) -> pl.DataFrame | None:
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
def _tearsheet(path: str, stamp: float, max_points: int) -> pl.DataFrame | None:
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
