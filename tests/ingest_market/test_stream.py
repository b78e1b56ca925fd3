"""Live stream through ccxt.pro's real ``binance`` websocket client against the local exchange.

The exchange's clock runs in accelerated time (an hour bar in a few hundred milliseconds), sends
open-bar updates and the final ``"x": true`` update like Binance, and can drop every websocket.
What reaches the ``EmbeddedBus`` is checked against the source candles: each closed bar once, in
order, with its final values, and nothing for the bar still open.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from commands.cli import main
from continuum.bus import EmbeddedBus
from continuum.schema import decode
from ingest.market import MarketStream, connect
from tests.services.exchange_server import ExchangeServer

from .conftest import HOUR, SYMBOLS, ms, source

pytestmark = pytest.mark.integration

T0 = ms("2024-01-10")


async def _until(pred, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _candles(bus: EmbeddedBus, symbol: str) -> list:
    return [c for c in (decode(v) for v in bus.log("market.candles")) if c.symbol == symbol]


def _assert_exact_run(cs: list, symbol: str) -> None:
    """Contiguous, no duplicate, final values equal to the source bars."""
    ts = [c.ts for c in cs]
    assert len(set(ts)) == len(ts), "duplicate bar on the bus"
    assert all(b - a == HOUR for a, b in zip(ts, ts[1:], strict=False)), "hole on the bus"
    want = source(symbol, ts[0], ts[-1] + HOUR).rows()
    got = [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in cs]
    assert got == want
    assert all(c.closed for c in cs)


def test_dropped_websocket_gives_no_gap_and_no_duplicate():
    with ExchangeServer(symbols=SYMBOLS) as srv:
        srv.set_clock(T0)

        async def run():
            ex = connect("binance", url=srv.url, rate_limit=False, pro=True)
            bus = EmbeddedBus(partitions=2)
            stream = MarketStream(ex, bus, SYMBOLS, "1h", trades=True, backoff_s=0.05, backoff_cap_s=0.2)
            stop = asyncio.Event()
            task = asyncio.create_task(stream.run(stop))
            try:
                await asyncio.sleep(0.5)  # subscribed
                srv.start_live(T0 + 1, updates_per_bar=4, tick_s=0.02)
                await _until(lambda: len(_candles(bus, "BTC/USDT")) >= 5, 10)
                srv.drop_websockets(refuse_ticks=24)  # ~6 bars close while the stream is away
                await _until(lambda: stream.stats.reconnects >= 2 and stream.stats.filled_candles >= 8, 15)
                n = len(_candles(bus, "ETH/USDT"))
                await _until(lambda: len(_candles(bus, "ETH/USDT")) >= n + 3, 10)  # live again after the fill
                now = srv.now()
            finally:
                stop.set()
                stats = await task
                await ex.close()
            return bus, stats, now

        bus, stats, now = asyncio.run(run())
    assert stats.reconnects >= 2 and stats.filled_candles >= 8
    for sym in SYMBOLS:
        cs = _candles(bus, sym)
        _assert_exact_run(cs, sym)
        assert cs[0].ts == T0  # the first bar that opened while we watched
        assert cs[-1].ts + HOUR <= now  # nothing for the bar still open
    trades = [decode(v) for v in bus.log("market.trades")]
    assert stats.filled_trades > 0
    for sym in SYMBOLS:
        ids = sorted(int(t.trade_id) for t in trades if t.symbol == sym)
        assert len(ids) == len(set(ids)), "duplicate trade"
        assert ids == list(range(ids[0], ids[-1] + 1)), "missing trade"


def test_open_bar_updates_are_not_bars_and_since_replays_history():
    with ExchangeServer(symbols=["BTC/USDT"]) as srv:
        srv.set_clock(T0)
        srv.ws_replay_closed = True  # duplicate, out-of-order klines on the websocket too

        async def run():
            ex = connect("binance", url=srv.url, rate_limit=False, pro=True)
            bus = EmbeddedBus(partitions=1)
            stream = MarketStream(ex, bus, ["BTC/USDT"], "1h", since_ms=T0 - 24 * HOUR)
            stop = asyncio.Event()
            task = asyncio.create_task(stream.run(stop))
            try:
                await asyncio.sleep(0.5)
                srv.start_live(T0 + 1, updates_per_bar=8, tick_s=0.02)
                await _until(lambda: len(_candles(bus, "BTC/USDT")) >= 24 + 4, 10)
            finally:
                stop.set()
                stats = await task
                await ex.close()
            return bus, stats

        bus, stats = asyncio.run(run())
    cs = _candles(bus, "BTC/USDT")
    _assert_exact_run(cs, "BTC/USDT")  # 8 updates per bar, one bar each, with its final values
    assert cs[0].ts == T0 - 24 * HOUR and stats.filled_candles == 24
    assert stats.published_candles == len(cs)
    assert stats.skipped_stale == 0  # a replayed old bar is never taken for the open one


def test_cli_stream_publishes_closed_bars(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    with ExchangeServer(symbols=["ETH/USDT"]) as srv:
        srv.set_clock(T0)
        timer = threading.Timer(0.8, srv.start_live, args=(T0 + 1,), kwargs={"updates_per_bar": 4, "tick_s": 0.02})
        timer.start()
        argv = ["stream", "market", "--exchange", "binance", "--symbols", "eth/usdt", "--timeframe", "1h"]
        rc = main([*argv, "--exchange-url", srv.url, "--no-rate-limit", "--max-bars", "3"])
        timer.cancel()
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("binance ETH/USDT 1h") >= 3
    assert "published" in out and "0 reconnects" in out
