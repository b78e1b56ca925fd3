"""A local exchange for the tests: Binance's spot REST and websocket wire format on 127.0.0.1.

ccxt's own client classes (sync ``ccxt.binance`` and ``ccxt.pro.binance``) are pointed at this server by
overriding their API URLs, so the tests exercise ccxt's real request building, parsing, rate limiter and
websocket client; only the exchange on the other end is local. It serves the real Binance 1h candles
from ``data/binance`` (freqtrade files) and synthetic aggregate trades derived from them (four trades
per bar: open, high, low, close, splitting the bar's volume), because no trade history is bundled.

Endpoints (only what spot ``load_markets``/``fetch_time``/``fetch_ohlcv``/``fetch_trades`` call):
``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/aggTrades``,
``/api/v3/trades``; websocket ``/ws`` and ``/ws/{n}`` with ``SUBSCRIBE`` to ``<sym>@kline_<tf>``,
``<sym>@trade`` and ``<sym>@aggTrade``.

Time. By default the clock is the real clock, so every bundled bar is long closed. :meth:`set_clock`
fixes a virtual "now" inside the data: the bar containing it is served as Binance serves the open bar
(partial values), later bars do not exist yet. :meth:`start_live` moves the virtual clock forward in
ticks (accelerated time) and pushes kline updates for the open bar, then the bar's final update with
``"x": true`` when it closes, and the trades that happened, exactly in Binance's stream format.

Faults, injected on request with :meth:`inject` (each fires ``times`` times on matching requests):
``429`` (with ``Retry-After``), ``5xx``, ``timeout`` (the response is delayed past the client's
timeout), ``short_page`` (fewer rows than asked), ``cut_body`` (the body stops mid-JSON),
``duplicates`` (rows repeated), ``shuffle`` (rows out of order), ``bad_request`` (a permanent 400, used
to interrupt a backfill). ``ws_replay_closed = True`` makes the kline stream repeat each closed bar after
the next bar's first update (a duplicate that also arrives out of order). :meth:`drop_websockets`
closes every live websocket mid-stream and can refuse reconnects for a number of ticks so that bars are really missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from continuum.timeframes import timeframe_ms
from ingest.replay import list_pairs, read_candles

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "binance"
TRADES_PER_BAR = 4


@dataclass
class Fault:
    kind: str  # 429 | 500 | 503 | timeout | short_page | cut_body | duplicates | shuffle | bad_request
    path: str = "/api/v3/klines"
    times: int = 1
    after: int = 0  # let this many matching requests through first
    retry_after: int = 1  # seconds, for 429
    delay_s: float = 3.0  # for timeout


@dataclass
class Series:
    """One market's bars as arrays (ts ascending) and the bar index by open time."""

    symbol: str  # unified, e.g. BTC/USDT
    market_id: str  # BTCUSDT
    ts: np.ndarray
    ohlcv: np.ndarray  # (N, 5)
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {int(t): i for i, t in enumerate(self.ts)}


def _num(x: float) -> str:
    """Binance sends decimals as strings; repr round-trips the float exactly."""
    return repr(float(x))


class ExchangeServer:
    """Binance-compatible REST + websocket server on a free port, running in a background thread."""

    def __init__(self, data_dir: Path = DATA, symbols: list[str] | None = None, timeframe: str = "1h"):
        self.timeframe = timeframe
        self.step = timeframe_ms(timeframe)
        self.series: dict[str, Series] = {}
        for sym, path in list_pairs(data_dir, timeframe).items():
            if symbols and sym not in symbols:
                continue
            df = read_candles(path)
            ts = df["date"].dt.epoch("ms").to_numpy().astype(np.int64)
            arr = df.select("open", "high", "low", "close", "volume").to_numpy()
            self.series[sym.replace("/", "")] = Series(sym, sym.replace("/", ""), ts, arr)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of every REST request
        self.ws_connections = 0
        self.ws_replay_closed = False  # fault: resend each closed kline after the next bar's first update
        self._virtual_now: int | None = None
        self._refuse_ws_ticks = 0
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        self._subs: dict[web.WebSocketResponse, set[str]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ExchangeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="exchange-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("local exchange server did not start")

    def stop(self) -> None:
        if not self._loop:
            return

        async def shutdown() -> None:
            if self._ticker:
                self._ticker.cancel()
            for ws in list(self._sockets):
                await ws.close()
            if self._runner:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _serve(self) -> None:
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/api/v3/aggTrades", self._agg_trades)
        r.add_get("/api/v3/trades", self._trades)
        r.add_get("/ws", self._ws)
        r.add_get("/ws/{stream}", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    # ------------------------------------------------------------------ controls (any thread)
    def inject(self, kind: str, path: str = "/api/v3/klines", times: int = 1, **kw: float) -> None:
        with self._lock:
            self.faults.append(Fault(kind, path, times, **kw))

    def reset(self) -> None:
        """Back to a clean exchange between tests: no faults, empty request log, the real clock."""
        with self._lock:
            self.faults.clear()
        self.requests.clear()
        self._virtual_now = None
        self._refuse_ws_ticks = 0

    def set_clock(self, now_ms: int | None) -> None:
        """Fix the exchange's "now" (None: the real clock)."""
        self._virtual_now = now_ms

    def now(self) -> int:
        return self._virtual_now if self._virtual_now is not None else int(time.time() * 1000)

    def start_live(self, start_ms: int, updates_per_bar: int = 4, tick_s: float = 0.02) -> None:
        """Run the clock from ``start_ms`` forward, one ``step/updates_per_bar`` per ``tick_s`` seconds."""
        self._virtual_now = start_ms
        dt = self.step // updates_per_bar

        async def tick() -> None:
            while True:
                await asyncio.sleep(tick_s)
                before = self._virtual_now
                self._virtual_now = before + dt
                if self._refuse_ws_ticks > 0:
                    self._refuse_ws_ticks -= 1
                for ws, streams in list(self._subs.items()):
                    for msg in self._stream_messages(streams, before, self._virtual_now):
                        if ws.closed:
                            break
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await ws.send_str(msg)

        def go() -> None:
            self._ticker = asyncio.ensure_future(tick())

        self._loop.call_soon_threadsafe(go)

    def drop_websockets(self, refuse_ticks: int = 0) -> None:
        """Close every websocket now, as a network drop would; refuse reconnects for ``refuse_ticks``."""
        self._refuse_ws_ticks = refuse_ticks

        async def drop() -> None:
            for ws, request in list(self._sockets.items()):
                self._subs.pop(ws, None)
                if request.transport is not None:
                    request.transport.abort()  # no close frame: the client sees the connection die
                else:
                    await ws.close()

        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(5)

    # ------------------------------------------------------------------ data helpers
    def bar_values(self, s: Series, i: int, now: int) -> tuple[list[float], bool]:
        """(o, h, l, c, v) of bar i as seen at ``now``, and whether it is closed."""
        t = int(s.ts[i])
        o, h, l, c, v = (float(x) for x in s.ohlcv[i])
        if now >= t + self.step:
            return [o, h, l, c, v], True
        frac = max(0.0, (now - t) / self.step)
        cp = o + (c - o) * frac
        return [o, max(o, cp), min(o, cp), cp, v * frac], False

    def visible(self, s: Series) -> int:
        """Number of bars that exist at the current clock (open bar included)."""
        return int(np.searchsorted(s.ts, self.now(), side="right"))

    def trades_of_bar(self, s: Series, i: int) -> Iterator[dict]:
        """The synthetic aggregate trades of bar i: open, high, low, close, each 1/4 of the volume."""
        t = int(s.ts[i])
        o, h, l, c, v = (float(x) for x in s.ohlcv[i])
        amount = v / TRADES_PER_BAR if v > 0 else 1e-8
        for k, price in enumerate((o, h, l, c)):
            yield {
                "a": i * TRADES_PER_BAR + k,
                "p": _num(price),
                "q": _num(amount),
                "f": i * TRADES_PER_BAR + k,
                "l": i * TRADES_PER_BAR + k,
                "T": t + k * (self.step // TRADES_PER_BAR),
                "m": k % 2 == 1,
                "M": True,
            }

    def kline_row(self, s: Series, i: int, now: int) -> list:
        t = int(s.ts[i])
        vals, _ = self.bar_values(s, i, now)
        return [t, *map(_num, vals), t + self.step - 1, "0", TRADES_PER_BAR, "0", "0", "0"]

    # ------------------------------------------------------------------ faults
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.path == path and f.times > 0:
                    if f.after > 0:
                        f.after -= 1
                        return None
                    f.times -= 1
                    return f
        return None

    async def _respond(self, request: web.Request, rows: list) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        err = {"code": -1003, "msg": "Too much request weight used; current limit is 6000 per minute."}
        if fault is None:
            return web.json_response(rows)
        if fault.kind == "429":
            return web.json_response(err, status=429, headers={"Retry-After": str(fault.retry_after)})
        if fault.kind in ("500", "502", "503"):
            return web.json_response({"code": -1001, "msg": "Internal error."}, status=int(fault.kind))
        if fault.kind == "bad_request":
            return web.json_response({"code": -1100, "msg": "Illegal characters found in parameter."}, status=400)
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            return web.json_response(rows)
        if fault.kind == "short_page":
            return web.json_response(rows[: max(1, len(rows) // 3)])
        if fault.kind == "duplicates":
            return web.json_response(rows + rows[: len(rows) // 2])
        if fault.kind == "shuffle":
            shuffled = list(rows)
            random.Random(7).shuffle(shuffled)
            return web.json_response(shuffled)
        if fault.kind == "cut_body":
            body = json.dumps(rows).encode()
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        raise ValueError(f"unknown fault {fault.kind}")

    def _log(self, request: web.Request) -> None:
        self.requests.append((request.path, dict(request.query)))

    def _series(self, request: web.Request) -> Series | web.Response:
        sid = request.query.get("symbol", "")
        s = self.series.get(sid)
        if s is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        return s

    # ------------------------------------------------------------------ REST handlers
    async def _ping(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response({"serverTime": self.now()})

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        symbols = []
        for s in self.series.values():
            base, quote = s.symbol.split("/")
            symbols.append(
                {
                    "symbol": s.market_id,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.00000100",
                            "maxPrice": "1000000.0",
                            "tickSize": "0.00000100",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00000100",
                            "maxQty": "9000000.0",
                            "stepSize": "0.00000100",
                        },
                    ],
                    "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                }
            )
        body = {
            "timezone": "UTC",
            "serverTime": self.now(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": symbols,
        }
        return await self._respond(request, body)

    async def _klines(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        s = self._series(request)
        if isinstance(s, web.Response):
            return s
        q = request.query
        if q.get("interval") != self.timeframe:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        limit = min(int(q.get("limit", 500)), 1000)
        n = self.visible(s)
        if "startTime" in q:
            lo = int(np.searchsorted(s.ts, int(q["startTime"]), side="left"))
            hi = n
            if "endTime" in q:
                hi = min(hi, int(np.searchsorted(s.ts, int(q["endTime"]), side="right")))
            idx = range(lo, min(hi, lo + limit))
        else:
            hi = n
            if "endTime" in q:
                hi = min(hi, int(np.searchsorted(s.ts, int(q["endTime"]), side="right")))
            idx = range(max(0, hi - limit), hi)
        now = self.now()
        return await self._respond(request, [self.kline_row(s, i, now) for i in idx])

    async def _agg_trades(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        s = self._series(request)
        if isinstance(s, web.Response):
            return s
        q = request.query
        limit = min(int(q.get("limit", 500)), 1000)
        now = self.now()
        n = self.visible(s)
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if start is not None and end is not None and end - start > 3_600_000:
            return web.json_response({"code": -1127, "msg": "More than 1 hours between startTime and endTime."}, 400)
        if start is None:
            lo = max(0, n - limit // TRADES_PER_BAR - 1)
        else:
            lo = int(np.searchsorted(s.ts, start - self.step, side="left"))
        out = []
        for i in range(lo, n):
            for tr in self.trades_of_bar(s, i):
                if tr["T"] > now or (start is not None and tr["T"] < start) or (end is not None and tr["T"] > end):
                    continue
                out.append(tr)
            if len(out) >= limit or (end is not None and int(s.ts[i]) > end):
                break
        out = out[-limit:] if start is None else out[:limit]
        return await self._respond(request, out)

    async def _trades(self, request: web.Request) -> web.StreamResponse:
        """``/api/v3/trades`` (recent trades): the same synthetic trades in the raw-trade format."""
        self._log(request)
        s = self._series(request)
        if isinstance(s, web.Response):
            return s
        limit = min(int(request.query.get("limit", 500)), 1000)
        now, n = self.now(), self.visible(s)
        out = [
            {
                "id": tr["a"],
                "price": tr["p"],
                "qty": tr["q"],
                "time": tr["T"],
                "isBuyerMaker": tr["m"],
                "isBestMatch": True,
            }
            for i in range(max(0, n - limit // TRADES_PER_BAR - 1), n)
            for tr in self.trades_of_bar(s, i)
            if tr["T"] <= now
        ]
        return await self._respond(request, out[-limit:])

    # ------------------------------------------------------------------ websocket
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_ws_ticks > 0:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.ws_connections += 1
        self._sockets[ws] = request
        self._subs[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if req.get("method") == "SUBSCRIBE":
                    self._subs.setdefault(ws, set()).update(req.get("params", []))
                    await ws.send_str(json.dumps({"result": None, "id": req.get("id")}))
                elif req.get("method") == "UNSUBSCRIBE":
                    self._subs.get(ws, set()).difference_update(req.get("params", []))
                    await ws.send_str(json.dumps({"result": None, "id": req.get("id")}))
        finally:
            self._sockets.pop(ws, None)
            self._subs.pop(ws, None)
        return ws

    def _stream_messages(self, streams: set[str], before: int, now: int) -> Iterator[str]:
        """Binance stream events for the clock moving from ``before`` to ``now``."""
        for name in sorted(streams):
            sid, _, channel = name.partition("@")
            s = self.series.get(sid.upper())
            if s is None:
                continue
            if channel == f"kline_{self.timeframe}":
                yield from self._kline_events(s, before, now)
            elif channel in ("trade", "aggTrade"):
                yield from self._trade_events(s, channel, before, now)

    def _kline_events(self, s: Series, before: int, now: int) -> Iterator[str]:
        lo = int(np.searchsorted(s.ts, before - self.step, side="right"))
        hi = int(np.searchsorted(s.ts, now, side="right"))
        late: list[str] = []
        for i in range(lo, hi):
            t = int(s.ts[i])
            closes_now = before < t + self.step <= now
            if not closes_now and now >= t + self.step:
                continue  # closed earlier
            vals, closed = self.bar_values(s, i, now)
            k = {
                "t": t,
                "T": t + self.step - 1,
                "s": s.market_id,
                "i": self.timeframe,
                "f": i * TRADES_PER_BAR,
                "L": i * TRADES_PER_BAR + TRADES_PER_BAR - 1,
                "o": _num(vals[0]),
                "c": _num(vals[3]),
                "h": _num(vals[1]),
                "l": _num(vals[2]),
                "v": _num(vals[4]),
                "n": TRADES_PER_BAR,
                "x": closed,
                "q": "0",
                "V": "0",
                "Q": "0",
                "B": "0",
            }
            msg = json.dumps({"e": "kline", "E": now, "s": s.market_id, "k": k})
            yield msg
            if closed and self.ws_replay_closed:
                late.append(msg)
        yield from late  # the closed bar again, after the next bar's first update: duplicate and out of order

    def _trade_events(self, s: Series, channel: str, before: int, now: int) -> Iterator[str]:
        lo = int(np.searchsorted(s.ts, before - self.step, side="left"))
        hi = int(np.searchsorted(s.ts, now, side="right"))
        for i in range(lo, hi):
            for tr in self.trades_of_bar(s, i):
                if before < tr["T"] <= now:
                    if channel == "aggTrade":
                        yield json.dumps({"e": "aggTrade", "E": now, "s": s.market_id, **tr})
                    else:
                        body = {"t": tr["a"], "p": tr["p"], "q": tr["q"], "T": tr["T"], "m": tr["m"], "M": True}
                        yield json.dumps({"e": "trade", "E": now, "s": s.market_id, **body})
