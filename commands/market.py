"""``continuum backfill market`` and ``continuum stream market``: argument parsing and the run functions.

Building the parser imports neither ccxt nor polars (``continuum --help`` stays fast); the run
functions import them and call into :mod:`ingest.market`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from commands.options import add_metrics_option, config_option, serve_metrics
from continuum.config import Config
from continuum.errors import UserError
from continuum.timeframes import date_ms, from_ms

BACKFILL_EPILOG = """\
examples:
  continuum backfill market --exchange binance --symbols BTC/USDT,ETH/USDT --since 2024-01-01
  continuum backfill market --exchange kraken --symbols BTC/USD --timeframe 4h --since 2023-01-01 --until 2024-01-01
  continuum backfill market --symbols BTC/USDT --since 2024-06-01 --trades     # candles and public trades
  continuum backfill market --symbols BTC/USDT        # resume after the lake's last bar

Reruns are safe: the lake merges on (exchange, symbol, timeframe, ts), and a run continues after the
newest candle already stored. The bar that is still open on the exchange is never written.
API keys (only needed for private endpoints) come from CONTINUUM_EXCHANGE_API_KEY / _SECRET / _PASSWORD.
"""

STREAM_EPILOG = """\
examples:
  continuum stream market --exchange binance --symbols BTC/USDT,ETH/USDT --timeframe 1m
  continuum stream market --symbols BTC/USDT --trades                  # closed candles and every trade
  continuum stream market --symbols BTC/USDT --since 2024-06-01        # publish history first, then go live

Only closed candles are published (topic market.candles; trades on market.trades). When the websocket
drops, the stream reconnects with backoff and publishes the bars it missed from REST before the next
live one: no hole, no duplicate. Ctrl-C stops it cleanly. The bus is [bus] in continuum.toml (Kafka or
the embedded default).
"""


def _common(parser: argparse.ArgumentParser) -> None:
    config_option(
        parser, "--exchange", key="exchange.name", metavar="ID", help="ccxt exchange id (default: [exchange].name)"
    )
    config_option(
        parser,
        "--symbols",
        key="exchange.symbols",
        metavar="A/B,...",
        help="comma-separated unified symbols (default: [exchange].symbols)",
    )
    config_option(
        parser,
        "--timeframe",
        key="exchange.timeframe",
        metavar="TF",
        help="bar length, e.g. 1m, 1h, 1d (default: [exchange].timeframe)",
    )
    parser.add_argument("--since", metavar="DATE", help="UTC start, ISO date or datetime (e.g. 2024-01-01)")
    parser.add_argument(
        "--exchange-url",
        metavar="URL",
        help="send every API request to this host instead (a proxy, a mirror, a local test exchange)",
    )
    config_option(
        parser,
        "--no-rate-limit",
        key="exchange.rate_limit",
        action="store_const",
        const=False,
        help="turn off ccxt's rate limiter (only for your own servers; [exchange].rate_limit)",
    )
    parser.add_argument("--timeout-ms", type=int, default=10_000, metavar="MS", help="HTTP timeout (default 10000)")


def add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = BACKFILL_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(parser)
    parser.add_argument("--until", metavar="DATE", help="UTC end, exclusive (default: now; the open bar is skipped)")
    parser.add_argument("--trades", action="store_true", help="also backfill public trades (fetch_trades)")
    config_option(parser, "--lake", key="lake.root", metavar="DIR", help="lake root (default: [lake].root)")
    parser.add_argument("--page-limit", type=int, default=1000, metavar="N", help="candles per request (default 1000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = STREAM_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(parser)
    parser.add_argument("--trades", action="store_true", help="also stream public trades (watch_trades)")
    parser.add_argument("--max-bars", type=int, metavar="N", help="stop after N closed bars per symbol")
    parser.add_argument("--quiet", action="store_true", help="do not print each closed bar")
    add_metrics_option(parser)


def _resolve(cfg: Config) -> tuple[str, list[str], str]:
    symbols = [s.strip() for s in cfg.exchange.symbols.split(",") if s.strip()]
    return cfg.exchange.name, symbols, cfg.exchange.timeframe


def _when(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%d %H:%M")


def _user_error(exchange: str, e: Exception, url: str | None) -> UserError:
    """A ccxt failure as one line; ccxt quotes request URLs, so the secrets of ``--exchange-url`` are masked."""
    import ccxt

    from continuum.redact import redact

    if isinstance(e, ccxt.AuthenticationError):
        return UserError(f"{exchange}: authentication failed ({type(e).__name__}); check CONTINUUM_EXCHANGE_API_KEY")
    return UserError(f"{exchange}: {type(e).__name__}: {redact(str(e), url)[:300]}")


def run_backfill(args: argparse.Namespace, cfg: Config) -> int:
    """Backfill each symbol in turn; prints one summary line per symbol (and per trade backfill)."""
    import ccxt

    from continuum.lake import Lake
    from continuum.redact import redact_logging
    from ingest.market import Retry, backfill_ohlcv, backfill_trades, check_symbols, check_timeframe, connect

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    redact_logging(args.exchange_url)
    exchange, symbols, timeframe = _resolve(cfg)
    since, until = date_ms(args.since, "--since"), date_ms(args.until, "--until")
    if since is not None and until is not None and until <= since:
        raise UserError("--until must be after --since")
    if not 1 <= args.page_limit <= 5000:
        raise UserError("--page-limit must be within 1..5000")
    rate_limit = cfg.exchange.rate_limit
    ex = connect(exchange, url=args.exchange_url, rate_limit=rate_limit, timeout_ms=args.timeout_ms)
    lake = Lake(cfg.lake.root)
    retry = Retry()
    try:
        check_timeframe(ex, timeframe)
        markets = retry.call(ex, ex.load_markets)
        symbols = check_symbols(markets, symbols, ex.id)
        for sym in symbols:
            r = backfill_ohlcv(
                ex,
                lake,
                sym,
                timeframe,
                since,
                until,
                page_limit=args.page_limit,
                retry=retry,
                progress=not args.no_progress,
            )
            span = f"{_when(r.start)} .. {_when(r.end)}" if r.end > r.start else "up to date"
            print(
                f"{ex.id} {sym} {timeframe}: {r.fetched} candles ({r.written} new) {span}; "
                f"{r.requests} requests, {r.retries} retries, {r.seconds:.1f}s"
            )
            if args.trades:
                t = backfill_trades(ex, lake, sym, since, until, retry=retry, progress=not args.no_progress)
                print(f"{ex.id} {sym} trades: {t.fetched} trades ({t.written} new); {t.requests} requests")
    except (ccxt.NetworkError, ccxt.ExchangeError) as e:
        raise _user_error(exchange, e, args.exchange_url) from None
    print(f"lake: {lake.root}")
    return 0


def run_stream(args: argparse.Namespace, cfg: Config) -> int:
    """Stream until Ctrl-C (or --max-bars per symbol); closed bars go to the bus and, unless --quiet, stdout."""
    import ccxt

    from continuum.bus_factory import make_bus
    from continuum.redact import redact_logging
    from ingest.market import MarketStream, check_symbols, check_timeframe, connect

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    redact_logging(args.exchange_url)
    exchange, symbols, timeframe = _resolve(cfg)
    since = date_ms(args.since, "--since")
    rate_limit = cfg.exchange.rate_limit

    async def main() -> int:
        ex = connect(exchange, url=args.exchange_url, rate_limit=rate_limit, pro=True, timeout_ms=args.timeout_ms)
        bus = make_bus(cfg)
        stop = asyncio.Event()
        counts: dict[str, int] = {}
        try:
            check_timeframe(ex, timeframe)
            markets = await ex.load_markets()
            syms = check_symbols(markets, symbols, ex.id)

            def on_candle(c) -> None:
                counts[c.symbol] = counts.get(c.symbol, 0) + 1
                if not args.quiet:
                    print(
                        f"{_when(c.ts)} {c.exchange} {c.symbol} {c.timeframe} o={c.open} h={c.high} "
                        f"l={c.low} c={c.close} v={c.volume}",
                        flush=True,
                    )
                if args.max_bars and all(counts.get(s, 0) >= args.max_bars for s in syms):
                    stop.set()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            stream = MarketStream(ex, bus, syms, timeframe, trades=args.trades, since_ms=since, on_candle=on_candle)
            if metrics is not None:
                observe_stream(metrics, stream)
            stats = await stream.run(stop)
            print(
                f"published {stats.published_candles} candles ({stats.filled_candles} from REST after gaps), "
                f"{stats.published_trades} trades; {stats.reconnects} reconnects"
            )
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            raise _user_error(exchange, e, args.exchange_url) from None
        finally:
            await ex.close()
            bus.close()
        return 0

    metrics = serve_metrics(args)
    try:
        return asyncio.run(main())
    finally:
        if metrics is not None:
            metrics.close()


def observe_stream(metrics, stream) -> None:
    """A market stream's counters as metrics: candles and trades published, reconnects."""
    st = stream.stats
    metrics.counter_from("continuum_events", lambda: st.published_candles, topic="market.candles", direction="out")
    metrics.counter_from("continuum_events", lambda: st.published_trades, topic="market.trades", direction="out")
    metrics.counter_from("continuum_reconnects", lambda: st.reconnects, source="market")
