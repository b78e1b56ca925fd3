"""REST history into the lake: resumable, page by page, for candles and trades alike.

Each page is written to the lake as it arrives, so an interrupted run loses at most one page of work. A
run resumes from the newest row already in the lake, and the lake merges on the natural key, so an
interrupted run continues where it stopped and a rerun leaves the same rows. Backfills never write the
bar that is still open by the exchange's clock (``fetch_time``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from continuum.errors import UserError
from continuum.lake import Lake
from ingest.market.client import exchange_now
from ingest.market.events import frame
from ingest.market.pages import CandleFeed, Feed, TradeFeed, pages
from ingest.market.retry import Retry


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


class Options(TypedDict, total=False):
    """Keyword options of every backfill (see :func:`backfill`)."""

    page_limit: int  # rows per request (default 1000)
    retry: Retry  # share one across calls to count a run's retries
    progress: bool  # a progress bar per symbol (default True)
    now_ms: int  # the exchange's clock, given instead of asked for (tests)


def backfill_ohlcv(
    ex: Any,
    lake: Lake,
    symbol: str,
    timeframe: str,
    since_ms: int | None,
    until_ms: int | None = None,
    **kw: Unpack[Options],
) -> BackfillResult:
    """Closed candles in ``[since, until)`` into the lake, resuming after the newest stored candle.

    The run ends when the range is covered or the exchange has nothing at or after the cursor; a short
    page is not taken as the end. Options as :func:`backfill`.
    """
    return backfill(CandleFeed(ex, symbol, timeframe), lake, since_ms, until_ms, **kw)


def backfill_trades(
    ex: Any, lake: Lake, symbol: str, since_ms: int | None, until_ms: int | None = None, **kw: Unpack[Options]
) -> BackfillResult:
    """Public trades in ``[since, until)`` into the lake, resuming at the newest stored trade.

    The cursor restarts *at* the newest stored timestamp (trades share milliseconds), and the lake's
    merge on ``trade_id`` drops the overlap. An hour without trades is not the end (see
    :mod:`ingest.market.pages`). Options as :func:`backfill`.
    """
    return backfill(TradeFeed(ex, symbol), lake, since_ms, until_ms, **kw)


def backfill(
    feed: Feed,
    lake: Lake,
    since_ms: int | None,
    until_ms: int | None = None,
    *,
    page_limit: int = 1000,
    retry: Retry | None = None,
    progress: bool = True,
    now_ms: int | None = None,
) -> BackfillResult:
    """``feed``'s history in ``[since, until)`` into the lake, resuming after what the lake already holds."""
    from tqdm import tqdm

    ex, symbol = feed.ex, feed.symbol
    retry = retry or Retry()
    t0 = time.perf_counter()
    last = lake.last_ts(feed.kind, **feed.lake_key())
    if last is not None and (since_ms is None or feed.resume(last) >= since_ms):
        start = feed.resume(last)
    elif since_ms is not None:
        start = feed.floor(since_ms)
    else:
        raise UserError(f"{symbol}: no {feed.kind}s in the lake yet; give --since DATE for the first backfill")
    now = now_ms if now_ms is not None else retry.call(ex, exchange_now, ex)
    end = feed.floor(now) if until_ms is None else min(until_ms, feed.floor(now))  # candles: not the open bar
    res = BackfillResult(symbol, feed.kind, start, end)
    retries_before = retry.retried
    bar = tqdm(
        total=max(0, end - start) // feed.unit_ms,
        desc=f"{ex.id} {symbol} {feed.label}",
        unit=feed.unit,
        disable=not progress or None,
        leave=True,
    )
    try:
        for page in pages(feed, start, end, limit=page_limit, retry=retry):
            res.requests += 1
            if page.events:
                res.written += lake.append(feed.kind, frame(page.events))
            res.fetched += page.fetched
            bar.update(page.covered // feed.unit_ms)
    finally:
        bar.close()
        res.retries = retry.retried - retries_before
        res.seconds = time.perf_counter() - t0
    return res
