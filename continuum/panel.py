"""The bar panel: many symbols' OHLCV aligned on one timeframe grid — what every source delivers to the learner.

It lives in the core because three parts build one (the replay source from files, the demo from
candles consumed off the bus, the live learner from its rolling windows) and the learner, strategies and
dashboard read it; none of them may import another's module to get it. :meth:`Panel.from_ohlcv` is
the one constructor: missing bars stay NaN with ``present=False`` (never forward-filled), and
``listed`` is derived from each symbol's first known bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from continuum.timeframes import from_ms

OHLCV = ("open", "high", "low", "close", "volume")
NEVER = np.iinfo(np.int64).max  # first-bar time of a symbol never seen


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

    @classmethod
    def from_ohlcv(
        cls,
        symbols: Sequence[str],
        timeframe: str,
        times: np.ndarray,
        ohlcv: np.ndarray,
        first_ts: Sequence[int | None],
    ) -> Panel:
        """``ohlcv`` (5, T, B) float with NaN for missing bars; ``first_ts[b]`` the first bar ever seen of
        symbol b (ms; ``None`` if never), which may lie before ``times[0]``."""
        times = np.asarray(times, dtype=np.int64)
        ohlcv = np.asarray(ohlcv, dtype=np.float64)
        first = np.array([NEVER if t is None else int(t) for t in first_ts], dtype=np.int64)
        if ohlcv.shape != (5, len(times), len(symbols)):
            raise ValueError(f"ohlcv must be (5, {len(times)}, {len(symbols)}), got {ohlcv.shape}")
        listed = times[:, None] >= first[None, :]
        return cls(list(symbols), timeframe, times, *ohlcv, ~np.isnan(ohlcv[3]), listed)

    def listing_ts(self) -> list[int | None]:
        """Per symbol, the first bar time it is listed from (``times[0]`` if listed before this panel starts;
        ``None`` if never): what :meth:`from_ohlcv` needs to rebuild this panel's ``listed``."""
        return [int(self.times[np.argmax(col)]) if col.any() else None for col in self.listed.T]

    @property
    def gaps(self) -> np.ndarray:
        """(T, B) bool: missing bars after the symbol's listing (exchange outages)."""
        return self.listed & ~self.present

    def slice(self, start: int, end: int) -> Panel:
        return Panel(
            self.symbols,
            self.timeframe,
            self.times[start:end],
            *(getattr(self, a)[start:end] for a in (*OHLCV, "present", "listed")),
        )

    def datetimes(self) -> list[datetime]:
        return [from_ms(int(t)) for t in self.times]


def gap_report(panel: Panel) -> dict[str, dict]:
    """Per symbol: number of missing bars after listing, how many gaps, and the longest (in bars)."""
    out = {}
    for j, s in enumerate(panel.symbols):
        g = panel.gaps[:, j].astype(np.int8)
        edges = np.diff(np.concatenate([[0], g, [0]]))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        out[s] = {"missing": int(g.sum()), "gaps": len(runs), "longest": int(runs.max(initial=0))}
    return out
