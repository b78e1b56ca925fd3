"""Market source: exchange candles and trades through ccxt, REST history into the lake, websockets onto the bus.

Two jobs, one set of rules:

- :func:`backfill_ohlcv` / :func:`backfill_trades` page through ``fetch_ohlcv`` / ``fetch_trades`` of any
  ccxt exchange with ccxt's own rate limiter (``enableRateLimit``) and write each page to the lake as it
  arrives (:mod:`.backfill`).
- :class:`MarketStream` follows ``watch_ohlcv`` / ``watch_trades`` (ccxt.pro), publishes to the bus and
  fills every gap a reconnect leaves over REST (:mod:`.stream`).

Candles and trades differ only in the ccxt call, the page cursor and the event type: :mod:`.pages` says
how, once, and both jobs walk pages the same way. A candle is final only once its period is over by the
*exchange's* clock, so a skewed local clock or a replayed exchange cannot turn an open bar into a closed one.

Faults an exchange throws (HTTP 429 with ``Retry-After``, 5xx, timeouts, truncated or garbled pages) are
retried with backoff by :class:`Retry` (:mod:`.retry`); pages are de-duplicated, sorted and checked against
the requested range, so short, repeated and out-of-order pages give the same lake contents as clean ones.
Connecting, API keys and the checks of exchange ids, symbols and timeframes are in :mod:`.client`.
"""

from ingest.market.backfill import BackfillResult, backfill_ohlcv, backfill_trades
from ingest.market.client import (
    ENV_KEYS,
    check_exchange_id,
    check_symbols,
    check_timeframe,
    connect,
    exchange_now,
    override_urls,
)
from ingest.market.events import candles_from_rows, trade_from_ccxt
from ingest.market.pages import TRADE_WINDOW_MS, CandleFeed, Feed, TradeFeed, clean_page
from ingest.market.retry import Retry, checked
from ingest.market.stream import MarketStream, StreamStats

__all__ = [
    "ENV_KEYS",
    "TRADE_WINDOW_MS",
    "BackfillResult",
    "CandleFeed",
    "Feed",
    "MarketStream",
    "Retry",
    "StreamStats",
    "TradeFeed",
    "backfill_ohlcv",
    "backfill_trades",
    "candles_from_rows",
    "check_exchange_id",
    "check_symbols",
    "check_timeframe",
    "checked",
    "clean_page",
    "connect",
    "exchange_now",
    "override_urls",
    "trade_from_ccxt",
]
