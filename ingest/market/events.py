"""ccxt rows as Continuum events: OHLCV rows as :class:`Candle`, trade dicts as :class:`Trade`.

A row the schema rejects is logged and skipped, so one bad row never stops a backfill or a stream.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import polars as pl

from continuum.schema import Candle, SchemaError, Trade

log = logging.getLogger("continuum.ingest.market")


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


def trades_from_dicts(exchange: str, symbol: str, trades: Sequence[dict]) -> list[Trade]:
    """ccxt trade dicts as validated Trade events, in the order given; bad ones are logged and skipped."""
    return [e for e in (trade_from_ccxt(exchange, symbol, t) for t in trades) if e is not None]


def frame(events: Sequence[Candle | Trade]) -> pl.DataFrame:
    """Columns straight from the dataclass slots: cheaper than asdict for thousands of rows."""
    names = [f.name for f in dataclasses.fields(type(events[0]))]
    return pl.DataFrame({n: [getattr(e, n) for e in events] for n in names})
