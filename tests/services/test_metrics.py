"""`continuum stream market --metrics-port`: the Prometheus endpoint of a source, scraped over real HTTP.

The stream runs as a process against the local Binance-speaking exchange (accelerated clock); the test
scrapes /metrics while it runs, drops the exchange's websockets, and reads the candles published and the
reconnects from the parsed exposition text. (The learner's metrics are scraped in tests/learner/test_live.py
and tests/kafka/test_learn_group.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.services.cli import cli_env, cli_process, terminate
from tests.services.exchange_server import ExchangeServer
from tests.services.prometheus import free_port as _port
from tests.services.prometheus import scrape_until

pytestmark = pytest.mark.integration

T0 = int(datetime(2024, 1, 10, tzinfo=UTC).timestamp() * 1000)


def test_stream_market_serves_events_and_reconnects(tmp_path):
    port = _port()
    out = (("direction", "out"), ("topic", "market.candles"))
    with ExchangeServer(symbols=["BTC/USDT"]) as srv:
        srv.set_clock(T0)
        args = ["stream", "market", "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframe", "1h",
                "--exchange-url", srv.url, "--no-rate-limit", "--quiet", "--metrics-port", str(port)]  # fmt: skip
        with cli_process(args, tmp_path, cli_env()) as p:
            reconnects = ("continuum_reconnects_total", (("source", "market"),))
            scrape_until(p, port, lambda m: reconnects in m)
            srv.start_live(T0 + 1, updates_per_bar=4, tick_s=0.02)
            scrape_until(p, port, lambda m: m.get(("continuum_events_total", out), 0) >= 3)
            srv.drop_websockets(refuse_ticks=8)
            m = scrape_until(p, port, lambda m: m.get(reconnects, 0) >= 1)
            stdout, _ = terminate(p)
    assert p.returncode == 0
    assert m[("continuum_events_total", out)] >= 3
    assert m[("continuum_reconnects_total", (("source", "market"),))] >= 1
    # the counters agree with what the command reports at the end
    published = int(stdout.split("published ", 1)[1].split()[0])
    assert published >= m[("continuum_events_total", out)]


def test_metrics_address_opens_the_endpoint_beyond_loopback_and_a_bad_one_is_one_line(capsys, tmp_path, monkeypatch):
    import argparse

    from commands.cli import main
    from commands.options import add_metrics_option, serve_metrics
    from tests.services.prometheus import scrape

    p = argparse.ArgumentParser()
    add_metrics_option(p)
    port = _port()
    m = serve_metrics(p.parse_args(["--metrics-port", str(port), "--metrics-address", "0.0.0.0"]))
    try:
        m.count("continuum_bars", 3)
        assert scrape(port)[("continuum_bars_total", ())] == 3  # reached over 127.0.0.1 on an all-interfaces bind
    finally:
        m.close()
    assert serve_metrics(p.parse_args([])) is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(tmp_path / "lake"))
    rc = main(["scheduler", "--metrics-port", str(_port()), "--metrics-address", "no.such.host.invalid", "--list"])
    assert rc == 0  # --list serves nothing
    rc = main(["alerts", "--follow", "--once", "--metrics-port", str(_port()), "--metrics-address", "no.such.invalid"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("continuum: error: --metrics-port ") and "no.such.invalid" in err[-1], err
