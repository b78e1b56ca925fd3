"""Replay source: freqtrade-style data directories as an aligned panel and as a candle event stream.

A data directory holds ``BASE_QUOTE-TIMEFRAME.{feather,parquet,json}`` files with columns
``date, open, high, low, close, volume`` (``date`` = UTC open time), exactly what freqtrade's
``download-data`` writes, so a freqtrade user can point Continuum at ``user_data/data/binance``.

Each series is reindexed onto the timeframe grid. Missing bars stay missing: they are NaN in the
panel with ``present=False`` and are never forward-filled; :func:`gap_report` says where they are.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from continuum.errors import UserError
from continuum.schema import Candle

_FILE = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)-(?P<tf>\d+[smhdwM])\.(?P<ext>feather|parquet|json)$"
)
_TF_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_ms(tf: str) -> int:
    m = re.fullmatch(r"(\d+)([smhdw])", tf)
    if not m:
        raise UserError(f"timeframe {tf!r} is not supported (use e.g. 1m, 5m, 1h, 4h, 1d)")
    return int(m.group(1)) * _TF_MS[m.group(2)]


def parse_date(s: str | None, what: str = "date") -> datetime | None:
    """ISO date or datetime (UTC). One clear error on anything else."""
    if s is None or s == "":
        return None
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise UserError(f"{what} {s!r} is not an ISO date (e.g. 2022-05-01 or 2022-05-01T12:00)") from None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def list_pairs(data_dir: str | Path, timeframe: str = "1h") -> dict[str, Path]:
    """``{"BTC/USDT": path}`` for every file of this timeframe in the directory."""
    d = Path(data_dir)
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
    """One freqtrade file as ``date (UTC datetime[ms]), open, high, low, close, volume``."""
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
    elif path.suffix == ".feather":
        df = pl.read_ipc(path)
    else:  # freqtrade json: [[ms, o, h, l, c, v], ...]
        import json

        try:
            rows = json.loads(path.read_text() or "[]")
        except ValueError as e:
            raise UserError(f"{path.name}: not valid JSON ({e})") from None
        df = pl.DataFrame(rows, schema=["date", "open", "high", "low", "close", "volume"], orient="row")
    need = ["date", "open", "high", "low", "close", "volume"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(f"{path.name}: missing columns {missing} (freqtrade layout: {', '.join(need)})")
    df = df.select(need)
    if df.schema["date"].is_integer():
        df = df.with_columns(pl.from_epoch("date", time_unit="ms"))
    df = df.with_columns(
        pl.col("date").dt.replace_time_zone(None).dt.cast_time_unit("ms").dt.replace_time_zone("UTC"),
        *(pl.col(c).cast(pl.Float64) for c in need[1:]),
    )
    return df.unique("date", keep="last").sort("date")


@dataclass
class Panel:
    """Aligned bars for many symbols: arrays (T, B), NaN where a bar is missing."""

    symbols: list[str]
    timeframe: str
    times: np.ndarray  # (T,) int64 ms, bar open times on the grid
    open: np.ndarray  # (T, B)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    present: np.ndarray  # (T, B) bool: a real bar exists
    listed: np.ndarray  # (T, B) bool: at or after the symbol's first bar

    @property
    def gaps(self) -> np.ndarray:
        """(T, B) bool: missing bars after the symbol's listing (exchange outages)."""
        return self.listed & ~self.present

    def slice(self, start: int, end: int) -> Panel:
        return Panel(
            self.symbols,
            self.timeframe,
            self.times[start:end],
            *(
                a[start:end]
                for a in (self.open, self.high, self.low, self.close, self.volume, self.present, self.listed)
            ),
        )

    def datetimes(self) -> list[datetime]:
        return [datetime.fromtimestamp(t / 1000, tz=UTC) for t in self.times]


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
    step = timeframe_ms(timeframe)
    frames = {s: read_candles(p) for s, p in pairs.items()}
    t0 = min(int(f["date"].min().timestamp() * 1000) for f in frames.values() if f.height)
    t1 = max(int(f["date"].max().timestamp() * 1000) for f in frames.values() if f.height)
    if start is not None:
        t0 = max(t0, int(start.timestamp() * 1000) // step * step)
    if end is not None:
        t1 = min(t1, int(end.timestamp() * 1000) - 1)
    if t1 < t0:
        raise UserError("the requested time range holds no bars")
    times = np.arange(t0 - t0 % step, t1 + 1, step, dtype=np.int64)
    T, B = len(times), len(pairs)
    arr = {c: np.full((T, B), np.nan) for c in ("open", "high", "low", "close", "volume")}
    listed = np.zeros((T, B), dtype=bool)
    for j, (_sym, f) in enumerate(frames.items()):
        ms = (f["date"].dt.epoch("ms")).to_numpy()
        on_grid = (ms % step == 0) & (ms >= times[0]) & (ms <= times[-1])
        idx = ((ms[on_grid] - times[0]) // step).astype(np.int64)
        for c in arr:
            arr[c][idx, j] = f[c].to_numpy()[on_grid]
        if f.height:
            first = int(ms.min())
            listed[:, j] = times >= first
    present = ~np.isnan(arr["close"])
    return Panel(
        list(pairs),
        timeframe,
        times,
        arr["open"],
        arr["high"],
        arr["low"],
        arr["close"],
        arr["volume"],
        present,
        listed,
    )


def gap_report(panel: Panel) -> dict[str, dict]:
    """Per symbol: number of missing bars after listing and the longest gap (in bars)."""
    out = {}
    for j, s in enumerate(panel.symbols):
        g = panel.gaps[:, j]
        runs, cur = [], 0
        for x in g:
            if x:
                cur += 1
            elif cur:
                runs.append(cur)
                cur = 0
        if cur:
            runs.append(cur)
        out[s] = {"missing": int(g.sum()), "gaps": len(runs), "longest": max(runs, default=0)}
    return out


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
