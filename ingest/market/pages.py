"""Paging through an exchange's history, written once for candles and trades.

A :class:`Feed` holds what candle and trade history differ in, for one symbol: the ccxt call
(``fetch_ohlcv`` or ``fetch_trades``), how a page moves the cursor, which event a row becomes, and where a
lake resume starts. :func:`pages` (REST client) and :func:`apages` (ccxt.pro client) walk ``[start, end)``
with retries; the backfill writes the pages to the lake, the stream publishes them to fill a gap.

Candles: the cursor is the open time of the next bar wanted. A page is cleaned (in range, one row per open
time, sorted) and the cursor moves past its last bar. An empty page ends the walk (the exchange has nothing
at or after the cursor); a short one does not, because exchanges and proxies truncate pages.

Trades: a request covers at most one trade window (Binance-style endpoints answer one hour at a time), so
an empty answer only moves the cursor past the window. A full page moves it *to* the newest timestamp on
it, not past it: trades share milliseconds, and the ids that come again are dropped downstream (the lake
merges on ``trade_id``, the stream remembers recent ids).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from continuum.schema import Candle, Trade
from continuum.timeframes import timeframe_ms
from ingest.market.events import candles_from_rows, trades_from_dicts
from ingest.market.retry import Retry, checked

TRADE_WINDOW_MS = 3_600_000  # Binance-style trade endpoints answer at most one hour per request


@dataclass
class Page:
    """One answer, cleaned: its events, the rows it counts as fetched, and where the next request starts."""

    events: list[Candle] | list[Trade]
    fetched: int
    cursor: int  # where this page was asked from
    next: int | None  # None: the exchange has nothing more

    @property
    def covered(self) -> int:
        """Milliseconds of the range this page accounts for (for progress)."""
        return 0 if self.next is None else self.next - self.cursor


class Feed(ABC):
    """One symbol's history of one kind; subclasses say what differs between kinds."""

    kind: str  # the lake kind of its events
    method: str  # the ccxt fetch method
    label: str  # progress bar: what is fetched
    unit: str  # progress bar: the unit counted
    unit_ms: int  # progress bar: milliseconds per unit

    def __init__(self, ex: Any, symbol: str):
        self.ex, self.symbol = ex, symbol

    def lake_key(self) -> dict[str, str]:
        """The lake partition of this feed's rows."""
        return {"exchange": self.ex.id, "symbol": self.symbol}

    @abstractmethod
    def resume(self, last: int) -> int:
        """Where to continue after the newest stored timestamp ``last``."""

    def floor(self, ms: int) -> int:
        """The first timestamp this feed can start at, at or before ``ms``."""
        return ms

    @abstractmethod
    def request(self, cursor: int, end: int, limit: int) -> tuple[tuple, dict[str, Any]]:
        """The ccxt call's arguments for the page at ``cursor``."""

    @abstractmethod
    def page(self, rows: Sequence[Any], cursor: int, end: int, limit: int) -> Page:
        """The answer to the request at ``cursor`` as events, and where the next request starts."""

    def fetch(self, cursor: int, end: int, limit: int) -> list:
        args, kw = self.request(cursor, end, limit)
        return checked(self.ex, getattr(self.ex, self.method)(*args, **kw))

    async def afetch(self, cursor: int, end: int, limit: int) -> list:
        args, kw = self.request(cursor, end, limit)
        return checked(self.ex, await getattr(self.ex, self.method)(*args, **kw))


class CandleFeed(Feed):
    kind, method, unit = "candle", "fetch_ohlcv", "bar"

    def __init__(self, ex: Any, symbol: str, timeframe: str):
        super().__init__(ex, symbol)
        self.timeframe, self.label = timeframe, timeframe
        self.step = self.unit_ms = timeframe_ms(timeframe)

    def lake_key(self) -> dict[str, str]:
        return {**super().lake_key(), "timeframe": self.timeframe}

    def resume(self, last: int) -> int:
        return last + self.step

    def floor(self, ms: int) -> int:
        return ms - ms % self.step

    def request(self, cursor: int, end: int, limit: int) -> tuple[tuple, dict[str, Any]]:
        return (self.symbol, self.timeframe), {"since": cursor, "limit": limit}

    def page(self, rows: Sequence[Any], cursor: int, end: int, limit: int) -> Page:
        kept = clean_page(rows, cursor, end)
        events = candles_from_rows(self.ex.id, self.symbol, self.timeframe, kept)
        return Page(events, len(kept), cursor, int(kept[-1][0]) + self.step if kept else None)


class TradeFeed(Feed):
    kind, method, label, unit, unit_ms = "trade", "fetch_trades", "trades", "min", 60_000

    def resume(self, last: int) -> int:
        return last  # trades share milliseconds: ask for the newest stored one again

    def _window_end(self, cursor: int, end: int) -> int:
        return min(end, cursor + TRADE_WINDOW_MS) - 1

    def request(self, cursor: int, end: int, limit: int) -> tuple[tuple, dict[str, Any]]:
        params = {"until": self._window_end(cursor, end)} if self.ex.id.startswith("binance") else {}
        return (self.symbol,), {"since": cursor, "limit": limit, "params": params}

    def page(self, rows: Sequence[Any], cursor: int, end: int, limit: int) -> Page:
        kept = sorted((t for t in rows if t.get("timestamp") is not None and cursor <= t["timestamp"] < end), key=_ts)
        events = trades_from_dicts(self.ex.id, self.symbol, kept)
        full = len(kept) >= limit  # more may share the newest millisecond: ask from there again
        nxt = max(cursor + 1, _ts(kept[-1])) if full else self._window_end(cursor, end) + 1
        return Page(events, len(events), cursor, nxt)


def _ts(trade: dict) -> int:
    return int(trade["timestamp"])


def clean_page(rows: Sequence[Sequence[Any]], lo: int, hi: int) -> list[Sequence[Any]]:
    """Rows with lo <= ts < hi, one per ts (last wins), sorted: survives duplicate and shuffled pages."""
    by_ts: dict[int, Sequence[Any]] = {}
    for r in rows:
        if r and r[0] is not None and lo <= int(r[0]) < hi:
            by_ts[int(r[0])] = r
    return [by_ts[t] for t in sorted(by_ts)]


def pages(feed: Feed, start: int, end: int, *, limit: int, retry: Retry) -> Iterator[Page]:
    """The pages of ``feed`` over ``[start, end)`` from a REST (sync) client, each fetched with retries."""
    cursor: int | None = start
    while cursor is not None and cursor < end:
        page = feed.page(retry.call(feed.ex, feed.fetch, cursor, end, limit), cursor, end, limit)
        yield page
        cursor = page.next


async def apages(feed: Feed, start: int, end: int, *, limit: int, retry: Retry) -> AsyncIterator[Page]:
    """:func:`pages` for an async (ccxt.pro) client."""
    cursor: int | None = start
    while cursor is not None and cursor < end:
        page = feed.page(await retry.acall(feed.ex, feed.afetch, cursor, end, limit), cursor, end, limit)
        yield page
        cursor = page.next
