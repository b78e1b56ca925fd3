"""Backfill throughput (candles/s) through ccxt against the local Binance-speaking exchange.

Runs ``ingest.market.backfill_ohlcv`` (ccxt's real ``binance`` client, HTTP on 127.0.0.1, lake writes
included) over the same range with ccxt's rate limiter off and on, and writes
``bench/results/backfill_throughput.json``. With the limiter on, the figure is what ccxt's leaky
bucket allows for Binance spot klines (weight 0.4 x 50 ms = 20 ms per 1000-candle page), i.e. close
to what a real backfill from Binance can reach before network latency.

    python bench/backfill_throughput.py [--months 12] [--symbol BTC/USDT] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from continuum.lake import Lake  # noqa: E402
from ingest.market import backfill_ohlcv, connect  # noqa: E402
from tests.services.exchange_server import ExchangeServer  # noqa: E402


def run_once(url: str, symbol: str, start: int, end: int, rate_limit: bool) -> dict:
    ex = connect("binance", url=url, rate_limit=rate_limit)
    ex.load_markets()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = backfill_ohlcv(ex, Lake(d), symbol, "1h", start, end, progress=False)
        dt = time.perf_counter() - t0
    return {"candles": r.fetched, "requests": r.requests, "seconds": dt, "candles_per_s": r.fetched / dt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--symbol", default="BTC/USDT")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "backfill_throughput.json"))
    args = ap.parse_args()
    start = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000)
    end = start + args.months * 30 * 86_400_000
    results: dict[str, dict] = {}
    with ExchangeServer(symbols=[args.symbol]) as srv:
        for label, rl in (("rate_limit_off", False), ("rate_limit_on", True)):
            runs = [run_once(srv.url, args.symbol, start, end, rl) for _ in range(args.repeats)]
            results[label] = {
                "candles": runs[0]["candles"],
                "requests": runs[0]["requests"],
                "candles_per_s_median": round(statistics.median(r["candles_per_s"] for r in runs)),
                "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
                "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
            }
            print(
                f"{label}: {results[label]['candles_per_s_median']} candles/s "
                f"({results[label]['candles']} candles, {results[label]['requests']} requests)"
            )
    doc = {
        "benchmark": "backfill_ohlcv through ccxt binance against tests/services/exchange_server.py",
        "symbol": args.symbol,
        "timeframe": "1h",
        "range": [
            datetime.fromtimestamp(start / 1000, UTC).isoformat(),
            datetime.fromtimestamp(end / 1000, UTC).isoformat(),
        ],
        "page_limit": 1000,
        "repeats": args.repeats,
        "results": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "lake writes included; the server shares the machine's cores with the client",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
