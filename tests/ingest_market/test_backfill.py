"""REST backfill through ccxt's real ``binance`` class against the local exchange (tests/services)."""

from __future__ import annotations

import time

import ccxt
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from commands.cli import main
from continuum.lake import Lake
from ingest.market import Retry, backfill_ohlcv, backfill_trades, check_symbols, connect, override_urls

from .conftest import HOUR, lake_candles, ms, source

pytestmark = pytest.mark.integration

FAST = Retry(attempts=6, base_s=0.02, cap_s=2.0)


def _ex(srv, **kw):
    ex = connect("binance", url=srv.url, rate_limit=kw.pop("rate_limit", False), **kw)
    ex.load_markets()
    return ex


def test_cli_multi_month_backfill_matches_source_exactly(srv, tmp_path, monkeypatch, capsys):
    """Six months of 2018 (with Binance's real outages in it) for two symbols, through the CLI."""
    monkeypatch.chdir(tmp_path)
    argv = ["backfill", "market", "--exchange", "binance", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h"]
    argv += ["--since", "2018-01-01", "--until", "2018-07-01", "--exchange-url", srv.url, "--lake", "lake"]
    assert main([*argv, "--no-rate-limit", "--no-progress"]) == 0
    lake = Lake(tmp_path / "lake")
    for sym in ("BTC/USDT", "ETH/USDT"):
        want = source(sym, ms("2018-01-01"), ms("2018-07-01"))
        got = lake_candles(lake, sym)
        assert got.height == want.height > 4000
        assert got["ts"].is_unique().all()
        assert_frame_equal(got, want, check_exact=True)
        gaps = want["ts"].diff().drop_nulls()
        assert (gaps > HOUR).sum() > 0  # the real exchange gaps are there, and only those
        assert_frame_equal(got["ts"].diff().drop_nulls().to_frame(), gaps.to_frame())
    out = capsys.readouterr().out
    assert "BTC/USDT 1h:" in out and "new" in out
    # a rerun is idempotent: nothing new, same rows
    before = lake_candles(lake, "BTC/USDT")
    assert main([*argv, "--no-rate-limit", "--no-progress"]) == 0
    assert "(0 new)" in capsys.readouterr().out
    assert_frame_equal(lake_candles(lake, "BTC/USDT"), before)


def test_interrupted_backfill_resumes_after_last_candle(srv, tmp_path):
    lake = Lake(tmp_path)
    ex = _ex(srv)
    start, end = ms("2021-01-01"), ms("2021-05-01")
    srv.inject("bad_request", after=2)  # the third page fails for good: the run dies
    with pytest.raises(ccxt.BadRequest):
        backfill_ohlcv(ex, lake, "BTC/USDT", "1h", start, end, retry=FAST, progress=False)
    partial = lake_candles(lake, "BTC/USDT")
    assert partial.height == 2000  # the two pages that arrived are kept
    srv.requests.clear()
    r = backfill_ohlcv(ex, lake, "BTC/USDT", "1h", start, end, retry=FAST, progress=False)
    first = next(q for p, q in srv.requests if p == "/api/v3/klines")
    assert int(first["startTime"]) == partial["ts"].max() + HOUR  # resumed, not restarted
    assert r.written == r.fetched == source("BTC/USDT", start, end).height - 2000
    assert_frame_equal(lake_candles(lake, "BTC/USDT"), source("BTC/USDT", start, end), check_exact=True)


@pytest.mark.parametrize(
    "fault",
    ["429", "500", "503", "timeout", "short_page", "cut_body", "duplicates", "shuffle"],
)
def test_each_fault_gives_the_same_lake(srv, tmp_path, fault):
    start, end = ms("2022-03-01"), ms("2022-06-01")
    ex = _ex(srv, timeout_ms=800)
    srv.inject(fault, after=1, times=2, delay_s=1.2, retry_after=1)
    lake = Lake(tmp_path)
    t0 = time.perf_counter()
    r = backfill_ohlcv(ex, lake, "ETH/USDT", "1h", start, end, retry=Retry(base_s=0.02), progress=False)
    took = time.perf_counter() - t0
    assert_frame_equal(lake_candles(lake, "ETH/USDT"), source("ETH/USDT", start, end), check_exact=True)
    if fault in ("429", "500", "503", "timeout", "cut_body"):
        assert r.retries == 2
    if fault == "429":
        assert took >= 2.0  # Retry-After: 1 was honoured twice
    assert not any(f.times for f in srv.faults)  # every injected fault really fired


def test_open_candle_is_not_written_as_final(srv, tmp_path):
    lake = Lake(tmp_path)
    ex = _ex(srv)
    bar = ms("2023-03-10T12:00")
    srv.set_clock(bar + 25 * 60_000)  # 12:25 on the exchange: the 12:00 bar is open
    rows = ex.fetch_ohlcv("BTC/USDT", "1h", since=bar - 3 * HOUR, limit=10)
    final = source("BTC/USDT", bar, bar + HOUR).row(0)
    assert rows[-1][0] == bar and rows[-1][4] != final[4]  # the exchange does serve the partial bar
    backfill_ohlcv(ex, lake, "BTC/USDT", "1h", bar - 48 * HOUR, None, retry=FAST, progress=False)
    assert lake_candles(lake, "BTC/USDT")["ts"].max() == bar - HOUR
    srv.set_clock(bar + HOUR + 1)  # the bar has closed: the next run writes its final values
    backfill_ohlcv(ex, lake, "BTC/USDT", "1h", None, None, retry=FAST, progress=False)
    got = lake_candles(lake, "BTC/USDT")
    assert got["ts"].max() == bar
    assert got.row(-1) == final
    assert lake.read("candle")["closed"].all()


def test_trades_backfill_complete_and_idempotent(srv, tmp_path):
    lake = Lake(tmp_path)
    ex = _ex(srv)
    start, end = ms("2024-02-01"), ms("2024-02-03")
    r = backfill_trades(ex, lake, "BTC/USDT", start, end, retry=FAST, progress=False)
    bars = source("BTC/USDT", start, end).height
    df = lake.read("trade", exchange="binance", symbol="BTC/USDT")
    assert df.height == r.written == 4 * bars
    assert df["trade_id"].is_unique().all()
    assert set(df["side"]) == {"buy", "sell"}
    again = backfill_trades(ex, lake, "BTC/USDT", start, end, retry=FAST, progress=False)
    assert again.written == 0
    assert lake.read("trade").height == df.height


def test_rate_limiter_spaces_requests(srv, tmp_path):
    ex = _ex(srv, rate_limit=True)
    lake = Lake(tmp_path)
    t0 = time.perf_counter()
    r = backfill_ohlcv(ex, lake, "BTC/USDT", "1h", ms("2020-01-01"), ms("2020-01-06"), page_limit=10, progress=False)
    took = time.perf_counter() - t0
    assert r.requests >= 12
    # ccxt's leaky bucket: Binance spot klines weigh 0.4 of rateLimit (50 ms), i.e. 20 ms per call
    cost = ex.api["public"]["get"]["klines"]["cost"]
    assert took >= (r.requests - 1) * cost * ex.rateLimit / 1000 * 0.9


def test_unknown_exchange_symbol_timeframe_are_clear(srv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["backfill", "market", "--exchange-url", srv.url, "--since", "2024-01-01", "--no-progress"]
    assert main([*base, "--exchange", "binanse", "--symbols", "BTC/USDT"]) == 2
    err = capsys.readouterr().err
    assert "unknown exchange 'binanse'" in err and "binance" in err and err.count("\n") == 1
    assert main([*base, "--exchange", "binance", "--symbols", "BTC/USDX"]) == 2
    err = capsys.readouterr().err
    assert "no market 'BTC/USDX'" in err and "BTC/USDT" in err
    assert main([*base, "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframe", "7h"]) == 2
    assert "no timeframe '7h'" in capsys.readouterr().err
    assert main(["stream", "market", "--exchange", "bitfinexx", "--symbols", "BTC/USD"]) == 2
    assert "bitfinex" in capsys.readouterr().err


def test_symbols_accept_case_and_exchange_ids():
    markets = {"BTC/USDT": {"id": "BTCUSDT"}, "ETH/USDT": {"id": "ETHUSDT"}}
    assert check_symbols(markets, ["btc/usdt", "ETHUSDT"], "binance") == ["BTC/USDT", "ETH/USDT"]


def test_api_keys_come_from_env_and_are_never_printed(srv, tmp_path, monkeypatch, capsys, caplog):
    secret = "s3cr3t-never-print-me"
    monkeypatch.setenv("CONTINUUM_EXCHANGE_API_KEY", "key-never-print-me")
    monkeypatch.setenv("CONTINUUM_EXCHANGE_SECRET", secret)
    ex = connect("binance", url=srv.url)
    assert ex.apiKey == "key-never-print-me" and ex.secret == secret
    monkeypatch.chdir(tmp_path)
    srv.inject("500", times=1)
    argv = ["backfill", "market", "--exchange-url", srv.url, "--symbols", "BTC/USDT", "--since", "2024-06-01"]
    assert main([*argv, "--no-progress", "--no-rate-limit"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "never-print-me" not in text


def test_override_urls_keeps_paths_and_maps_schemes():
    urls = {"public": "https://api.binance.com/api/v3", "ws": {"spot": "wss://stream.binance.com:9443/ws"}, "n": 1}
    got = override_urls(urls, "http://127.0.0.1:9000")
    assert got == {"public": "http://127.0.0.1:9000/api/v3", "ws": {"spot": "ws://127.0.0.1:9000/ws"}, "n": 1}
    assert override_urls(urls, "https://proxy.example/binance")["ws"]["spot"] == "wss://proxy.example/binance/ws"


def test_lake_frames_are_plain_schema_columns(srv, tmp_path):
    lake = Lake(tmp_path)
    backfill_ohlcv(_ex(srv), lake, "BTC/USDT", "1h", ms("2024-01-01"), ms("2024-01-02"), progress=False)
    df = lake.read("candle")
    assert df.columns[:4] == ["exchange", "symbol", "timeframe", "ts"]
    assert df.schema["ts"] == pl.Int64 and df.height == 24
