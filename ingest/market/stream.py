"""Live candles and trades from ccxt.pro websockets onto the bus, gap-free across reconnects.

A candle is final only once its period is over by the exchange's clock: the stream publishes a bar when
the exchange has moved on to a later bar, and the open bar's updates are not bars. After a websocket drop
the stream reconnects with backoff, forgets the open bar it was following (its last values may be stale)
and fills every bar it missed over REST before it publishes the next live one, so the bus sees each
closed bar once, in order, with no hole. Trades missed while away are filled the same way; trade ids
already published are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from continuum.bus import Bus
from continuum.redact import redact
from continuum.schema import Candle, Trade
from continuum.timeframes import timeframe_ms
from ingest.market.events import candles_from_rows, trades_from_dicts
from ingest.market.pages import CandleFeed, Feed, TradeFeed, apages
from ingest.market.retry import Retry, backoff

log = logging.getLogger("continuum.ingest.market")

FILL_PAGE = 1000  # rows per REST request when filling a gap


@dataclass
class StreamStats:
    published_candles: int = 0
    published_trades: int = 0
    filled_candles: int = 0  # published from REST after a gap
    filled_trades: int = 0
    reconnects: int = 0
    skipped_stale: int = 0  # live updates of bars already published


class _Follow(ABC):
    """One websocket subscription (a symbol's candles or trades): what a delivery publishes, how a gap fills."""

    kind: str  # for log lines

    def __init__(self, stream: MarketStream, symbol: str, feed: Feed):
        self.stream, self.symbol, self.feed = stream, symbol, feed
        self.resync = False  # the next delivery first fills the gap since the last published event

    @abstractmethod
    def watch(self) -> Any:
        """The next websocket delivery (an awaitable)."""

    @abstractmethod
    async def deliver(self, batch: Sequence[Any]) -> None:
        """Publish what the delivery ``batch`` completes."""

    @abstractmethod
    def publish(self, ev: Any, filled: bool = False) -> None:
        """One event onto the bus (``filled``: from REST, after a gap)."""

    def dropped(self) -> None:
        self.resync = True

    async def fill(self, start: int, upto: int) -> None:
        """Publish the events in ``[start, upto)`` from REST: what the websocket did not deliver."""
        async for page in apages(self.feed, start, upto, limit=FILL_PAGE, retry=self.stream.retry):
            for ev in page.events:
                self.publish(ev, filled=True)
        self.stream.bus.flush()


class _Candles(_Follow):
    kind = "ohlcv"

    def __init__(self, stream: MarketStream, symbol: str, since_ms: int | None):
        super().__init__(stream, symbol, CandleFeed(stream.ex, symbol, stream.timeframe))
        self.step = stream.step
        # open time of the newest published (closed) bar
        self.last_published = None if since_ms is None else since_ms - since_ms % self.step - self.step
        self.current: list | None = None  # newest row of the bar the exchange is still updating
        self.resync = True  # at start too: fill up to the first live bar

    def watch(self) -> Any:
        return self.stream.ex.watch_ohlcv(self.symbol, self.stream.timeframe)

    def publish(self, c: Candle, filled: bool = False) -> None:
        stats = self.stream.stats
        self.stream.bus.publish(c)
        stats.published_candles += 1
        if filled:
            stats.filled_candles += 1
        self.last_published = c.ts
        if self.stream.on_candle:
            self.stream.on_candle(c)

    def dropped(self) -> None:
        self.current, self.resync = None, True  # its last values may be stale: refill over REST

    async def _fill_to(self, upto: int) -> None:
        if self.last_published is not None:
            await self.fill(self.last_published + self.step, upto)

    async def _close(self, row: list) -> None:
        ts = int(row[0])
        if self.last_published is not None and ts <= self.last_published:
            self.stream.stats.skipped_stale += 1
            return
        if self.last_published is not None and ts > self.last_published + self.step:
            await self._fill_to(ts)
        for c in candles_from_rows(self.stream.ex.id, self.symbol, self.stream.timeframe, [row]):
            self.publish(c)
        self.last_published = ts
        self.stream.bus.flush()

    async def deliver(self, batch: Sequence[Sequence[Any]]) -> None:
        """A bar is closed once a later bar has started (Binance sends the bar's final values, ``x: true``,
        before the next bar's first update, so the stored row is final)."""
        for r in sorted((list(r) for r in batch), key=lambda r: r[0]):
            ts = int(r[0])
            if self.resync:
                self.resync = False
                await self._fill_to(ts)  # everything before the live bar is closed
            if self.current is not None and ts > int(self.current[0]):
                await self._close(self.current)
            if self.current is None or ts >= int(self.current[0]):
                self.current = r


class _Trades(_Follow):
    kind = "trades"

    def __init__(self, stream: MarketStream, symbol: str):
        super().__init__(stream, symbol, TradeFeed(stream.ex, symbol))
        self.last_ts: int | None = None
        self.seen: deque[str] = deque(maxlen=5000)  # recent ids: a refill overlaps what was live
        self.seen_set: set[str] = set()

    def watch(self) -> Any:
        return self.stream.ex.watch_trades(self.symbol)

    def _new(self, tid: str) -> bool:
        if tid in self.seen_set:
            return False
        if len(self.seen) == self.seen.maxlen:
            self.seen_set.discard(self.seen[0])
        self.seen.append(tid)
        self.seen_set.add(tid)
        return True

    def publish(self, t: Trade, filled: bool = False) -> None:
        if not self._new(t.trade_id):
            return
        stats = self.stream.stats
        self.stream.bus.publish(t)
        stats.published_trades += 1
        if filled:
            stats.filled_trades += 1
        self.last_ts = max(self.last_ts or 0, t.ts)

    async def deliver(self, batch: Sequence[dict]) -> None:
        trades = sorted(batch, key=lambda t: t.get("timestamp") or 0)
        if self.resync and trades and self.last_ts is not None:
            self.resync = False
            await self.fill(self.last_ts, int(trades[0]["timestamp"]))
        for t in trades_from_dicts(self.stream.ex.id, self.symbol, trades):
            self.publish(t)
        self.stream.bus.flush()


class MarketStream:
    """Closed candles (and trades) from ccxt.pro websockets onto the bus, gap-free across reconnects.

    ``since_ms`` makes the stream start by publishing history from that time (over REST); without it the
    first published bar is the first one that closes while the stream runs. ``on_candle`` sees every
    published candle (the CLI prints them); ``stop`` ends the run cleanly.
    """

    def __init__(
        self,
        ex: Any,
        bus: Bus,
        symbols: Sequence[str],
        timeframe: str,
        *,
        trades: bool = False,
        since_ms: int | None = None,
        retry: Retry | None = None,
        backoff_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        on_candle: Callable[[Candle], None] | None = None,
    ):
        self.ex, self.bus, self.symbols, self.timeframe = ex, bus, list(symbols), timeframe
        self.step = timeframe_ms(timeframe)
        self.trades = trades
        self.retry = retry or Retry()
        self.backoff_s, self.backoff_cap_s = backoff_s, backoff_cap_s
        self.on_candle = on_candle
        self.stats = StreamStats()
        self.follows: list[_Follow] = [_Candles(self, s, since_ms) for s in self.symbols]
        if trades:
            self.follows += [_Trades(self, s) for s in self.symbols]

    async def _follow(self, f: _Follow, stop: asyncio.Event) -> None:
        import ccxt

        failures = 0
        while not stop.is_set():
            try:
                batch = await f.watch()
                failures = 0
                await f.deliver(batch)
            except (ccxt.NetworkError, ccxt.ExchangeClosedByUser, ccxt.BadResponse) as e:
                if stop.is_set():
                    return
                wait = backoff(failures, self.backoff_s, self.backoff_cap_s)
                failures += 1
                self.stats.reconnects += 1
                why, name = redact(str(e)), f"{self.ex.id} {f.symbol} {f.kind}"
                log.warning("%s stream dropped (%s); reconnecting in %.1fs", name, why, wait)
                f.dropped()
                await asyncio.sleep(wait)

    async def run(self, stop: asyncio.Event | None = None) -> StreamStats:
        """Follow every symbol until ``stop`` is set; returns the counters."""
        stop = stop or asyncio.Event()
        await self.ex.load_markets()
        tasks = [asyncio.create_task(self._follow(f, stop)) for f in self.follows]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and t.exception():
                    raise t.exception()
        finally:
            stop.set()
            for t in [waiter, *tasks]:
                t.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)
            self.bus.flush()
        return self.stats
