"""Replay source: freqtrade-style data directories as an aligned panel and as a candle event stream.

A data directory holds ``BASE_QUOTE-TIMEFRAME.{feather,parquet,json}`` files with columns
``date, open, high, low, close, volume`` (``date`` = UTC open time), exactly what freqtrade's
``download-data`` writes, so a freqtrade user can point Continuum at ``user_data/data/binance``.

Each series is reindexed onto the timeframe grid of a :class:`continuum.panel.Panel`. Missing bars stay
missing: they are NaN in the panel with ``present=False`` and are never forward-filled;
:func:`continuum.panel.gap_report` says where they are.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from continuum.errors import UserError
from continuum.files import read_feather, read_parquet, short_reason
from continuum.panel import OHLCV, Panel
from continuum.schema import Candle
from continuum.timeframes import timeframe_ms

_FILE = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)-(?P<tf>\d+[smhdwM])\.(?P<ext>feather|parquet|json)$"
)


def list_pairs(data_dir: str | Path, timeframe: str = "1h") -> dict[str, Path]:
    """``{"BTC/USDT": path}`` for every file of this timeframe in the directory."""
    d = Path(data_dir)
    if d.is_file():
        raise UserError(f"data directory {d} is a file; name the directory that holds BASE_QUOTE-TIMEFRAME files")
    if not d.is_dir():
        raise UserError(f"data directory {d} does not exist")
    out: dict[str, Path] = {}
    for f in sorted(d.iterdir()):
        m = _FILE.match(f.name)
        if m and m.group("tf") == timeframe:
            sym = f"{m.group('base').upper()}/{m.group('quote').upper()}"
            out.setdefault(sym, f)  # parquet/feather/json: the first in sorted order wins
    if not out:
        raise UserError(f"no BASE_QUOTE-{timeframe}.(feather|parquet|json) files in {d}")
    return out


def read_candles(path: Path) -> pl.DataFrame:
    """One freqtrade file as ``date (UTC datetime[ms]), open, high, low, close, volume``.

    A file that cannot be read (truncated, another format, other column types) is a UserError naming it.
    """
    if path.suffix == ".parquet":
        df = read_parquet(path)
    elif path.suffix == ".feather":
        df = read_feather(path)
    else:  # freqtrade json: [[ms, o, h, l, c, v], ...]
        import json

        try:
            rows = json.loads(path.read_text() or "[]")
        except ValueError as e:  # also UnicodeDecodeError: a binary file under a .json name
            raise UserError(f"{path}: not valid JSON ({short_reason(e)})") from None
        try:
            df = pl.DataFrame(rows, schema=["date", "open", "high", "low", "close", "volume"], orient="row")
        except Exception:  # a dict, rows of another length, strings: not freqtrade's layout
            raise UserError(
                f"{path}: not a freqtrade candle file (expected a JSON list of "
                "[ms, open, high, low, close, volume] rows)"
            ) from None
    need = ["date", "open", "high", "low", "close", "volume"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing} (freqtrade layout: {', '.join(need)})")
    df = df.select(need)
    try:
        if df.schema["date"].is_integer():
            df = df.with_columns(pl.from_epoch("date", time_unit="ms"))
        df = df.with_columns(
            pl.col("date").dt.replace_time_zone(None).dt.cast_time_unit("ms").dt.replace_time_zone("UTC"),
            *(pl.col(c).cast(pl.Float64) for c in need[1:]),
        )
    except Exception:  # e.g. a string date column, a non-numeric price
        types = ", ".join(f"{c}: {t}" for c, t in df.schema.items())
        raise UserError(
            f"{path}: columns of the wrong type ({types}); freqtrade layout: date (datetime or epoch ms), "
            "open..volume numbers"
        ) from None
    return df.unique("date", keep="last").sort("date")


def load_panel(
    data_dir: str | Path,
    symbols: Sequence[str] | None = None,
    timeframe: str = "1h",
    start: datetime | None = None,
    end: datetime | None = None,
) -> Panel:
    """Read, reindex onto one grid and align the symbols of a freqtrade data directory."""
    pairs = list_pairs(data_dir, timeframe)
    if symbols:
        unknown = [s for s in symbols if s not in pairs]
        if unknown:
            raise UserError(f"symbol {unknown[0]} not in {data_dir}; available: {', '.join(pairs)}")
        pairs = {s: pairs[s] for s in symbols}
    step = timeframe_ms(timeframe, "--timeframe")
    frames = {s: read_candles(p) for s, p in pairs.items()}
    if not any(f.height for f in frames.values()):
        raise UserError(f"no bars in the files of {', '.join(pairs)} in {data_dir}")
    t0 = min(int(f["date"].min().timestamp() * 1000) for f in frames.values() if f.height)
    t1 = max(int(f["date"].max().timestamp() * 1000) for f in frames.values() if f.height)
    if start is not None:
        t0 = max(t0, int(start.timestamp() * 1000) // step * step)
    if end is not None:
        t1 = min(t1, int(end.timestamp() * 1000) - 1)
    if t1 < t0:
        raise UserError("the requested time range holds no bars")
    times = np.arange(t0 - t0 % step, t1 + 1, step, dtype=np.int64)
    ohlcv = np.full((len(OHLCV), len(times), len(pairs)), np.nan)
    first: list[int | None] = []
    for j, f in enumerate(frames.values()):
        ms = f["date"].dt.epoch("ms").to_numpy()
        on_grid = (ms % step == 0) & (ms >= times[0]) & (ms <= times[-1])
        idx = ((ms[on_grid] - times[0]) // step).astype(np.int64)
        for c, name in enumerate(OHLCV):
            ohlcv[c, idx, j] = f[name].to_numpy()[on_grid]
        first.append(int(ms.min()) if f.height else None)
    return Panel.from_ohlcv(list(pairs), timeframe, times, ohlcv, first)


def replay_events(panel: Panel, exchange: str = "binance") -> Iterator[Candle]:
    """Candle events of all symbols merged in time order (by open time, then symbol). Gaps emit nothing."""

    def one(j: int) -> Iterator[tuple[int, str, Candle]]:
        sym = panel.symbols[j]
        for i in np.flatnonzero(panel.present[:, j]):
            yield (
                int(panel.times[i]),
                sym,
                Candle(
                    exchange,
                    sym,
                    panel.timeframe,
                    int(panel.times[i]),
                    float(panel.open[i, j]),
                    float(panel.high[i, j]),
                    float(panel.low[i, j]),
                    float(panel.close[i, j]),
                    float(panel.volume[i, j]),
                ),
            )

    for _, _, c in heapq.merge(*(one(j) for j in range(len(panel.symbols)))):
        yield c
