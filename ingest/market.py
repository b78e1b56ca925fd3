"""Market source: exchange candles and trades through ccxt, REST history into the lake, websockets onto the bus.

Two jobs, one set of rules:

- :func:`backfill_ohlcv` / :func:`backfill_trades` page through ``fetch_ohlcv`` / ``fetch_trades`` of any
  ccxt exchange with ccxt's own rate limiter (``enableRateLimit``) and write each page to the lake as it
  arrives. They resume from the newest row already in the lake and the lake merges on the natural key,
  so an interrupted run continues where it stopped and a rerun leaves the same rows.
- :class:`MarketStream` follows ``watch_ohlcv`` / ``watch_trades`` (ccxt.pro) and publishes to the bus.

A candle is final only once its period is over by the *exchange's* clock (``fetch_time``, so a skewed
local clock or a replayed exchange cannot turn an open bar into a closed one). Backfills never write the
open bar. The stream publishes a bar when the exchange has moved on to a later bar; the open bar's
updates are not bars. After a websocket drop the stream reconnects with backoff, forgets the open bar it
was following (its last values may be stale) and fills every bar it missed over REST before it
publishes the next live one, so the bus sees each closed bar once, in order, with no hole.

Faults an exchange throws (HTTP 429 with ``Retry-After``, 5xx, timeouts, truncated or garbled pages) are
retried with backoff by :class:`Retry`; pages are de-duplicated, sorted and checked against the requested
range, so short, repeated and out-of-order pages give the same lake contents as clean ones.

Exchange ids, symbols and timeframes are checked at start against ``ccxt.exchanges`` and the exchange's
markets; an unknown one is a :class:`~continuum.errors.UserError` naming the closest valid choices.
API keys come only from the environment (``CONTINUUM_EXCHANGE_API_KEY``, ``CONTINUUM_EXCHANGE_SECRET``,
``CONTINUUM_EXCHANGE_PASSWORD``) and are never logged or printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from continuum.bus import Bus
from continuum.errors import UserError
from continuum.lake import Lake
from continuum.schema import Candle, SchemaError, Trade
from continuum.timeframes import timeframe_ms

log = logging.getLogger("continuum.ingest.market")

ENV_KEYS = {
    "apiKey": "CONTINUUM_EXCHANGE_API_KEY",
    "secret": "CONTINUUM_EXCHANGE_SECRET",
    "password": "CONTINUUM_EXCHANGE_PASSWORD",
}
TRADE_WINDOW_MS = 3_600_000  # Binance-style trade endpoints answer at most one hour per request


# --------------------------------------------------------------------------- exchange set-up
def check_exchange_id(exchange_id: str) -> str:
    """The ccxt id, or a UserError naming the closest ids (typos are the common case)."""
    import ccxt

    eid = exchange_id.strip().lower()
    if eid in ccxt.exchanges:
        return eid
    close = difflib.get_close_matches(eid, ccxt.exchanges, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else "; see `python -c 'import ccxt; print(ccxt.exchanges)'`"
    raise UserError(f"unknown exchange {exchange_id!r}{hint}")


def override_urls(urls: Any, base: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` tree moved to ``base``'s host, keeping its path.

    ``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:8080/api/v3`` and the websocket
    ``wss://stream.binance.com:9443/ws`` becomes ``ws://127.0.0.1:8080/ws`` (``ws`` for ``http``,
    ``wss`` for ``https``): a proxy, a mirror, or the local exchange of the tests.
    """
    b = urlsplit(base if "://" in base else f"http://{base}")
    if not b.netloc:
        raise UserError(f"exchange url {base!r} is not like http://host:port")
    if isinstance(urls, dict):
        return {k: override_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, list):
        return [override_urls(v, base) for v in urls]
    if isinstance(urls, str) and "://" in urls:
        u = urlsplit(urls)
        secure = b.scheme in ("https", "wss")
        scheme = ("wss" if secure else "ws") if u.scheme in ("ws", "wss") else ("https" if secure else "http")
        path = b.path.rstrip("/") + u.path
        return urlunsplit((scheme, b.netloc, path, u.query, u.fragment))
    return urls


def connect(
    exchange_id: str,
    *,
    url: str | None = None,
    rate_limit: bool = True,
    pro: bool = False,
    timeout_ms: int = 10_000,
    options: dict | None = None,
) -> Any:
    """A ccxt exchange (sync, or ccxt.pro async for websockets) ready for public market data.

    Keys are read from the environment only; ``url`` re-points every API URL (see :func:`override_urls`).
    Binance is limited to its spot markets: loading its futures and margin market lists would cost extra
    requests (and need keys) for data this source never reads.
    """
    eid = check_exchange_id(exchange_id)
    if pro:
        import ccxt.pro as cx

        if eid not in cx.exchanges:
            raise UserError(f"exchange {eid!r} has no websocket API in ccxt.pro; use `continuum backfill market`")
    else:
        import ccxt as cx
    params: dict[str, Any] = {"enableRateLimit": rate_limit, "timeout": timeout_ms}
    for attr, env in ENV_KEYS.items():
        if os.environ.get(env):
            params[attr] = os.environ[env]
    opts = dict(options or {})
    if eid.startswith("binance") and eid in ("binance", "binanceus"):
        opts.setdefault("defaultType", "spot")
        opts.setdefault("fetchMarkets", {"types": ["spot"]})
        opts.setdefault("fetchCurrencies", False)
        opts.setdefault("fetchMargins", False)
    params["options"] = opts
    ex = getattr(cx, eid)(params)
    if url:
        ex.urls["api"] = override_urls(ex.urls["api"], url)
    return ex


def check_timeframe(ex: Any, timeframe: str) -> str:
    tfs = getattr(ex, "timeframes", None) or {}
    if tfs and timeframe not in tfs:
        close = difflib.get_close_matches(timeframe, list(tfs), n=3, cutoff=0.3)
        raise UserError(f"{ex.id} has no timeframe {timeframe!r}; closest: {', '.join(close or list(tfs)[:6])}")
    timeframe_ms(timeframe)  # Continuum's own grid must know it too
    return timeframe


def check_symbols(markets: dict[str, Any], symbols: Sequence[str], exchange_id: str) -> list[str]:
    """Unified symbols as the exchange spells them; an unknown one names the closest listed markets."""
    out = []
    ids = {m.get("id"): s for s, m in markets.items() if isinstance(m, dict)}
    for raw in symbols:
        s = raw.strip().upper()
        if not s:
            continue
        if s in markets:
            out.append(s)
            continue
        if s in ids:  # an exchange id like BTCUSDT: accept it, it names exactly one market
            out.append(ids[s])
            continue
        close = difflib.get_close_matches(s, list(markets), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; {len(markets)} markets listed"
        raise UserError(f"{exchange_id} has no market {raw.strip()!r}{hint}")
    if not out:
        raise UserError("no symbols given (e.g. --symbols BTC/USDT,ETH/USDT)")
    return out


def exchange_now(ex: Any) -> int:
    """The exchange's clock in ms: an open bar is open by the exchange's time, not ours."""
    if ex.has.get("fetchTime"):
        return int(ex.fetch_time())
    return int(ex.milliseconds())


# --------------------------------------------------------------------------- retries
@dataclass
class Retry:
    """Backoff for transient exchange failures; ``Retry-After`` wins when the exchange sends one."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    retried: int = 0

    def delay(self, n: int, ex: Any, error: BaseException | None = None) -> float:
        import ccxt

        ra = None
        if isinstance(error, ccxt.DDoSProtection):  # 429/418: the response's headers are the fresh ones
            headers = getattr(ex, "last_response_headers", None) or {}
            ra = {k.lower(): v for k, v in headers.items()}.get("retry-after")
        if ra is not None:
            try:
                return min(float(ra), self.cap_s)
            except ValueError:
                pass
        return min(self.cap_s, self.base_s * 2**n) * (0.5 + random.random() / 2)

    @staticmethod
    def transient(e: BaseException) -> bool:
        import ccxt

        # OperationFailed is ccxt's root of "try again" errors (network, 5xx, rate limits, timeouts)
        return isinstance(e, (ccxt.OperationFailed, ccxt.BadResponse, ccxt.NullResponse))

    def call(self, ex: Any, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        for n in range(self.attempts):
            try:
                return fn(*args, **kw)
            except Exception as e:
                if not self.transient(e) or n == self.attempts - 1:
                    raise
                wait = self.delay(n, ex, e)
                self.retried += 1
                log.warning("%s: %s, retrying in %.1fs", ex.id, type(e).__name__, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    async def acall(self, ex: Any, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        for n in range(self.attempts):
            try:
                return await fn(*args, **kw)
            except Exception as e:
                if not self.transient(e) or n == self.attempts - 1:
                    raise
                wait = self.delay(n, ex, e)
                self.retried += 1
                log.warning("%s: %s, retrying in %.1fs", ex.id, type(e).__name__, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")


def checked(ex: Any, result: Any) -> Any:
    """ccxt turns a body that is not JSON into an empty list; an empty page would end a backfill early,
    so a garbled body (text received, nothing parsed) is raised as a retryable BadResponse."""
    import ccxt

    body = getattr(ex, "last_http_response", None)
    if not result and body and getattr(ex, "last_json_response", None) is None:
        try:
            json.loads(body)  # a real empty answer ("[]") is fine
        except ValueError:
            raise ccxt.BadResponse(f"{ex.id}: response is not valid JSON ({len(body)} bytes)") from None
    return result


def fetch_page(ex: Any, *args: Any, **kw: Any) -> list:
    return checked(ex, ex.fetch_ohlcv(*args, **kw))


def fetch_trades_page(ex: Any, *args: Any, **kw: Any) -> list:
    return checked(ex, ex.fetch_trades(*args, **kw))


async def afetch_page(ex: Any, *args: Any, **kw: Any) -> list:
    return checked(ex, await ex.fetch_ohlcv(*args, **kw))


async def afetch_trades_page(ex: Any, *args: Any, **kw: Any) -> list:
    return checked(ex, await ex.fetch_trades(*args, **kw))


# --------------------------------------------------------------------------- rows -> events
def candles_from_rows(exchange: str, symbol: str, timeframe: str, rows: Sequence[Sequence[Any]]) -> list[Candle]:
    """ccxt OHLCV rows as validated Candle events; a row the schema rejects is logged and skipped."""
    out = []
    for r in rows:
        try:
            vol = 0.0 if r[5] is None else float(r[5])
            out.append(
                Candle(exchange, symbol, timeframe, int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), vol)
            )
        except (SchemaError, TypeError, ValueError) as e:
            log.warning("%s %s: skipping bad candle %r (%s)", exchange, symbol, list(r), e)
    return out


def trade_from_ccxt(exchange: str, symbol: str, t: dict) -> Trade | None:
    try:
        side = t.get("side") if t.get("side") in ("buy", "sell") else "unknown"
        return Trade(exchange, symbol, str(t["id"]), int(t["timestamp"]), float(t["price"]), float(t["amount"]), side)
    except (SchemaError, TypeError, ValueError, KeyError) as e:
        log.warning("%s %s: skipping bad trade %r (%s)", exchange, symbol, t.get("id"), e)
        return None


def _frame(events: Sequence[Candle | Trade]) -> pl.DataFrame:
    """Columns straight from the dataclass slots: cheaper than asdict for thousands of rows."""
    cls = type(events[0])
    names = [f.name for f in dataclasses.fields(cls)]
    return pl.DataFrame({n: [getattr(e, n) for e in events] for n in names})


def _clean_page(rows: Sequence[Sequence[Any]], lo: int, hi: int) -> list[Sequence[Any]]:
    """Rows with lo <= ts < hi, one per ts (last wins), sorted: survives duplicate and shuffled pages."""
    by_ts: dict[int, Sequence[Any]] = {}
    for r in rows:
        if r and r[0] is not None and lo <= int(r[0]) < hi:
            by_ts[int(r[0])] = r
    return [by_ts[t] for t in sorted(by_ts)]


# --------------------------------------------------------------------------- backfill
@dataclass
class BackfillResult:
    symbol: str
    kind: str
    start: int  # first ts asked for (after resuming)
    end: int  # exclusive bound: min(until, start of the open bar)
    written: int = 0  # rows the lake did not have before
    fetched: int = 0  # rows received and kept
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0


def backfill_ohlcv(
    ex: Any,
    lake: Lake,
    symbol: str,
    timeframe: str,
    since_ms: int | None,
    until_ms: int | None = None,
    *,
    page_limit: int = 1000,
    retry: Retry | None = None,
    progress: bool = True,
    now_ms: int | None = None,
) -> BackfillResult:
    """Closed candles in ``[since, until)`` into the lake, resuming after the newest stored candle.

    Pages are written as they arrive, so an interrupted run loses at most one page of work. The loop
    ends when the range is covered or the exchange has nothing at or after the cursor (an empty page);
    a short page is not taken as the end, because exchanges and proxies truncate pages.
    """
    from tqdm import tqdm

    retry = retry or Retry()
    step = timeframe_ms(timeframe)
    t0 = time.perf_counter()
    last = lake.last_ts("candle", exchange=ex.id, symbol=symbol, timeframe=timeframe)
    if last is not None and (since_ms is None or last + step > since_ms):
        start = last + step
    elif since_ms is not None:
        start = since_ms - since_ms % step
    else:
        raise UserError(f"{symbol}: nothing in the lake yet; give --since DATE for the first backfill")
    now = now_ms if now_ms is not None else retry.call(ex, exchange_now, ex)
    open_bar = now - now % step  # the bar that is still open by the exchange's clock
    end = open_bar if until_ms is None else min(until_ms, open_bar)
    res = BackfillResult(symbol, "candle", start, end)
    retries_before = retry.retried
    cursor = start
    bar = tqdm(
        total=max(0, (end - start) // step),
        desc=f"{ex.id} {symbol} {timeframe}",
        unit="bar",
        disable=not progress or None,
        leave=True,
    )
    try:
        while cursor < end:
            rows = retry.call(ex, fetch_page, ex, symbol, timeframe, since=cursor, limit=page_limit)
            res.requests += 1
            page = _clean_page(rows, cursor, end)
            if not page:
                break
            events = candles_from_rows(ex.id, symbol, timeframe, page)
            if events:
                res.written += lake.append("candle", _frame(events))
            res.fetched += len(page)
            nxt = int(page[-1][0]) + step
            bar.update((nxt - cursor) // step)
            cursor = nxt
    finally:
        bar.close()
        res.retries = retry.retried - retries_before
        res.seconds = time.perf_counter() - t0
    return res


def backfill_trades(
    ex: Any,
    lake: Lake,
    symbol: str,
    since_ms: int | None,
    until_ms: int | None = None,
    *,
    page_limit: int = 1000,
    retry: Retry | None = None,
    progress: bool = True,
    now_ms: int | None = None,
) -> BackfillResult:
    """Public trades in ``[since, until)`` into the lake, resuming at the newest stored trade.

    The cursor restarts *at* the newest stored timestamp (trades share milliseconds), and the lake's
    merge on ``trade_id`` drops the overlap. An empty answer advances the cursor by one trade window:
    Binance-style endpoints answer one hour at a time, so an hour without trades is not the end.
    """
    from tqdm import tqdm

    retry = retry or Retry()
    t0 = time.perf_counter()
    last = lake.last_ts("trade", exchange=ex.id, symbol=symbol)
    if last is not None and (since_ms is None or last >= since_ms):
        start = last
    elif since_ms is not None:
        start = since_ms
    else:
        raise UserError(f"{symbol}: no trades in the lake yet; give --since DATE for the first backfill")
    now = now_ms if now_ms is not None else retry.call(ex, exchange_now, ex)
    end = now if until_ms is None else min(until_ms, now)
    res = BackfillResult(symbol, "trade", start, end)
    retries_before = retry.retried
    cursor = start
    bar = tqdm(
        total=max(0, end - start) // 60_000,
        desc=f"{ex.id} {symbol} trades",
        unit="min",
        disable=not progress or None,
    )
    try:
        while cursor < end:
            window_end = min(end, cursor + TRADE_WINDOW_MS) - 1
            params = {"until": window_end} if ex.id.startswith("binance") else {}
            trades = retry.call(ex, fetch_trades_page, ex, symbol, since=cursor, limit=page_limit, params=params)
            res.requests += 1
            kept = [t for t in trades if t.get("timestamp") is not None and cursor <= t["timestamp"] < end]
            events = [e for e in (trade_from_ccxt(ex.id, symbol, t) for t in kept) if e is not None]
            if events:
                res.written += lake.append("trade", _frame(events))
                res.fetched += len(events)
            newest = max((e.ts for e in events), default=None)
            if newest is None or (newest <= cursor and len(kept) < page_limit):
                nxt = window_end + 1  # nothing new in this window: move on
            elif len(kept) >= page_limit:
                nxt = newest if newest > cursor else newest + 1  # a full page: more may share the last ms
            else:
                nxt = window_end + 1
            bar.update((nxt - cursor) // 60_000)
            cursor = nxt
    finally:
        bar.close()
        res.retries = retry.retried - retries_before
        res.seconds = time.perf_counter() - t0
    return res


# --------------------------------------------------------------------------- live stream
@dataclass
class StreamStats:
    published_candles: int = 0
    published_trades: int = 0
    filled_candles: int = 0  # published from REST after a gap
    filled_trades: int = 0
    reconnects: int = 0
    skipped_stale: int = 0  # live updates of bars already published


@dataclass
class _CandleState:
    last_published: int | None = None  # open time of the newest published (closed) bar
    current: list | None = None  # newest row of the bar the exchange is still updating
    resync: bool = True  # after (re)connect: fill the gap up to the first live bar


@dataclass
class _TradeState:
    last_ts: int | None = None
    seen: deque = field(default_factory=lambda: deque(maxlen=5000))
    seen_set: set = field(default_factory=set)
    resync: bool = False

    def add(self, tid: str) -> bool:
        if tid in self.seen_set:
            return False
        if len(self.seen) == self.seen.maxlen:
            self.seen_set.discard(self.seen[0])
        self.seen.append(tid)
        self.seen_set.add(tid)
        return True


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
        self.candles = {s: _CandleState() for s in self.symbols}
        self.trade_state = {s: _TradeState() for s in self.symbols}
        if since_ms is not None:
            for st in self.candles.values():
                st.last_published = since_ms - since_ms % self.step - self.step

    # ------------------------------------------------------------------ publishing
    def _publish(self, c: Candle, filled: bool = False) -> None:
        self.bus.publish(c)
        self.stats.published_candles += 1
        if filled:
            self.stats.filled_candles += 1
        if self.on_candle:
            self.on_candle(c)

    async def _fill(self, symbol: str, upto: int) -> None:
        """Publish the closed bars after the last published one and before ``upto`` from REST."""
        st = self.candles[symbol]
        if st.last_published is None:
            return
        cursor = st.last_published + self.step
        while cursor < upto:
            rows = await self.retry.acall(
                self.ex, afetch_page, self.ex, symbol, self.timeframe, since=cursor, limit=1000
            )
            page = _clean_page(rows, cursor, upto)
            if not page:
                break
            for c in candles_from_rows(self.ex.id, symbol, self.timeframe, page):
                self._publish(c, filled=True)
                st.last_published = c.ts
            cursor = int(page[-1][0]) + self.step
        self.bus.flush()

    async def _close(self, symbol: str, row: list) -> None:
        st = self.candles[symbol]
        ts = int(row[0])
        if st.last_published is not None and ts <= st.last_published:
            self.stats.skipped_stale += 1
            return
        if st.last_published is not None and ts > st.last_published + self.step:
            await self._fill(symbol, ts)
        for c in candles_from_rows(self.ex.id, symbol, self.timeframe, [row]):
            self._publish(c)
        st.last_published = ts
        self.bus.flush()

    async def on_ohlcv(self, symbol: str, rows: Sequence[Sequence[Any]]) -> None:
        """One websocket delivery: a bar is closed once a later bar has started (Binance sends the
        bar's final values, ``x: true``, before the next bar's first update, so the stored row is final)."""
        st = self.candles[symbol]
        for r in sorted((list(r) for r in rows), key=lambda r: r[0]):
            ts = int(r[0])
            if st.resync:
                st.resync = False
                await self._fill(symbol, ts)  # everything before the live bar is closed
            if st.current is not None and ts > int(st.current[0]):
                await self._close(symbol, st.current)
            if st.current is None or ts >= int(st.current[0]):
                st.current = r

    async def on_trades(self, symbol: str, trades: Sequence[dict]) -> None:
        ts_state = self.trade_state[symbol]
        batch = sorted(trades, key=lambda t: t.get("timestamp") or 0)
        if ts_state.resync and batch and ts_state.last_ts is not None:
            ts_state.resync = False
            await self._fill_trades(symbol, ts_state.last_ts, int(batch[0]["timestamp"]))
        for t in batch:
            ev = trade_from_ccxt(self.ex.id, symbol, t)
            if ev is not None and ts_state.add(ev.trade_id):
                self.bus.publish(ev)
                self.stats.published_trades += 1
                ts_state.last_ts = max(ts_state.last_ts or 0, ev.ts)
        self.bus.flush()

    async def _fill_trades(self, symbol: str, since: int, upto: int) -> None:
        """Trades in [since, upto) missed while disconnected; ids already published are skipped."""
        st = self.trade_state[symbol]
        cursor = since
        while cursor < upto:
            window_end = min(upto, cursor + TRADE_WINDOW_MS) - 1
            params = {"until": window_end} if self.ex.id.startswith("binance") else {}
            got = await self.retry.acall(
                self.ex, afetch_trades_page, self.ex, symbol, since=cursor, limit=1000, params=params
            )
            kept = sorted((t for t in got if cursor <= (t.get("timestamp") or -1) < upto), key=lambda t: t["timestamp"])
            for t in kept:
                ev = trade_from_ccxt(self.ex.id, symbol, t)
                if ev is not None and st.add(ev.trade_id):
                    self.bus.publish(ev)
                    self.stats.published_trades += 1
                    self.stats.filled_trades += 1
            if len(kept) >= 1000:
                cursor = max(cursor + 1, int(kept[-1]["timestamp"]))
            else:
                cursor = window_end + 1

    # ------------------------------------------------------------------ loops
    async def _loop(self, symbol: str, kind: str, stop: asyncio.Event) -> None:
        import ccxt

        failures = 0
        while not stop.is_set():
            try:
                if kind == "ohlcv":
                    rows = await self.ex.watch_ohlcv(symbol, self.timeframe)
                    failures = 0
                    await self.on_ohlcv(symbol, rows)
                else:
                    got = await self.ex.watch_trades(symbol)
                    failures = 0
                    await self.on_trades(symbol, got)
            except (ccxt.NetworkError, ccxt.ExchangeClosedByUser, ccxt.BadResponse) as e:
                if stop.is_set():
                    return
                wait = min(self.backoff_cap_s, self.backoff_s * 2**failures) * (0.5 + random.random() / 2)
                failures += 1
                self.stats.reconnects += 1
                log.warning("%s %s %s stream dropped (%s); reconnecting in %.1fs", self.ex.id, symbol, kind, e, wait)
                if kind == "ohlcv":
                    st = self.candles[symbol]
                    st.current, st.resync = None, True  # its last values may be stale: refill over REST
                else:
                    self.trade_state[symbol].resync = True
                await asyncio.sleep(wait)

    async def run(self, stop: asyncio.Event | None = None) -> StreamStats:
        """Follow every symbol until ``stop`` is set; returns the counters."""
        stop = stop or asyncio.Event()
        await self.ex.load_markets()
        tasks = [asyncio.create_task(self._loop(s, "ohlcv", stop)) for s in self.symbols]
        if self.trades:
            tasks += [asyncio.create_task(self._loop(s, "trades", stop)) for s in self.symbols]
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
