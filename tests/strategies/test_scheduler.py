"""``continuum scheduler``: retention, --list, --once jobs; nothing waits for a wall-clock trigger."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime

import pytest

from commands.cli import main
from commands.scheduler import retain
from continuum.errors import UserError


def _files(d, n: int) -> list:
    """n checkpoint files, the i-th modified i minutes after the first (names sort opposite to age)."""
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - 3600
    out = []
    for i in range(n):
        f = d / f"ckpt-{n - i:03d}.pt"
        f.write_bytes(b"x")
        os.utime(f, (t0 + 60 * i, t0 + 60 * i))
        out.append(f)
    return out  # oldest first


def test_retain_keeps_exactly_the_newest_n(tmp_path):
    d = tmp_path / "ck"
    files = _files(d, 7)
    (d / ".ckpt-999.pt.abc.tmp").write_bytes(b"in flight")
    pre = d / "pretrained.pt"
    pre.write_bytes(b"p")
    os.utime(pre, (0, 0))  # the oldest of all, but named in [learner].pretrained
    removed = retain(d, 3, protect=(pre,))
    assert sorted(removed) == sorted(files[:4])
    assert {f.name for f in d.iterdir()} == {f.name for f in files[4:]} | {".ckpt-999.pt.abc.tmp", "pretrained.pt"}
    assert retain(d, 3, protect=(pre,)) == []  # idempotent
    assert retain(tmp_path / "absent", 3) == []
    with pytest.raises(UserError):
        retain(d, 0)


def test_once_retention_uses_the_configuration(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "ck"
    files = _files(d, 5)
    monkeypatch.setenv("CONTINUUM_LEARNER__CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("CONTINUUM_LEARNER__KEEP_CHECKPOINTS", "2")
    assert main(["scheduler", "--once", "retention"]) == 0
    assert sorted(p.name for p in d.iterdir()) == sorted(f.name for f in files[3:])
    assert capsys.readouterr().out.count("removed ") == 3
    assert main(["scheduler", "--once", "retention", "--keep", "1", "--checkpoint-dir", str(d)]) == 0
    assert [p.name for p in d.iterdir()] == [files[-1].name]


def test_list_prints_every_job_with_a_future_run_time(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["scheduler", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["backfill", "retention", "nightly"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for ln in lines:
        when = datetime.strptime(re.search(r"next (\S+ \S+) UTC", ln).group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert 0 <= (when - now).total_seconds() <= 86_400
    assert "02:00 UTC" in lines[2] and ":05 UTC" in lines[0] and ":30 UTC" in lines[1]
    assert main(["scheduler", "--list", "--no-backfill"]) == 0
    assert "backfill" not in capsys.readouterr().out
    assert main(["scheduler", "--once", "backfill", "--no-backfill"]) == 2


def test_once_nightly_writes_dated_reports(tmp_path, monkeypatch, capsys):
    """The nightly job on a tiny scope (HAR, two assets, four months): both reports and a `latest` link."""
    monkeypatch.chdir(tmp_path)
    argv = ["scheduler", "--once", "nightly", "--reports", str(tmp_path / "rep"), "--nightly-models", "har"]
    argv += ["--nightly-start", "2019-01-01", "--nightly-end", "2019-05-01", "--nightly-pretrain-until", "2019-02-15"]
    assert main(argv) == 0
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    root = tmp_path / "rep" / day
    assert json.loads((root / "evaluate" / "evaluation.json").read_text())["models"].keys() == {"har"}
    bt = json.loads((root / "backtest" / "backtest.json").read_text())
    assert bt["model"] == "har" and bt["range"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert (tmp_path / "rep" / "latest").resolve() == root.resolve()
    assert f"nightly reports in {root}" in capsys.readouterr().out


def test_once_nightly_reports_a_failed_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["scheduler", "--once", "nightly", "--reports", str(tmp_path / "rep"), "--nightly-models", "har"]
    argv += ["--nightly-start", "2019-01-01", "--nightly-end", "2019-02-01"]  # nothing left to stream
    assert main(argv) == 1
    assert "evaluate exited 2" in capsys.readouterr().err
    assert not (tmp_path / "rep" / "latest").exists()


@pytest.mark.integration
def test_once_backfill_closes_the_gap_after_the_lakes_last_bar(tmp_path, monkeypatch, capsys):
    """Against the local Binance-speaking exchange: BTC resumes after its last stored bar up to the
    exchange's "now"; ETH, never backfilled, is left alone with a hint."""
    from continuum.lake import Lake
    from ingest.market import backfill_ohlcv, connect
    from tests.services.exchange_server import ExchangeServer

    hour = 3_600_000
    t = lambda s: int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp() * 1000)  # noqa: E731
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONTINUUM_EXCHANGE__RATE_LIMIT", "false")
    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(tmp_path / "lake"))
    with ExchangeServer(symbols=["BTC/USDT", "ETH/USDT"]) as srv:
        srv.set_clock(t("2018-03-10T00:30"))
        lake = Lake(tmp_path / "lake")
        ex = connect("binance", url=srv.url, rate_limit=False)
        backfill_ohlcv(ex, lake, "BTC/USDT", "1h", t("2018-03-01"), t("2018-03-05"), progress=False)
        assert lake.last_ts("candle", exchange="binance", symbol="BTC/USDT", timeframe="1h") == t("2018-03-04T23:00")
        assert main(["scheduler", "--once", "backfill", "--exchange-url", srv.url]) == 0
    out = capsys.readouterr().out
    assert "ETH/USDT: skipped" in out and "BTC/USDT: " in out
    ts = lake.read("candle", exchange="binance", symbol="BTC/USDT", timeframe="1h")["ts"]
    assert ts.max() == t("2018-03-09T23:00")  # the open bar (00:00-01:00 on the 10th) is not written
    assert ts.is_unique().all() and ts.min() == t("2018-03-01")
    assert ts.len() == (t("2018-03-10") - t("2018-03-01")) // hour  # nine whole days, no hole
    assert f"BTC/USDT: {ts.len() - 96} new bars" in out  # all but the four seeded days came from the job


@pytest.mark.integration
def test_running_scheduler_serves_job_metrics_and_stops_on_sigterm(tmp_path):
    """The scheduler as a process with ``--now retention,backfill --metrics-port``: retention runs at start and
    prunes; the backfill of a symbol the lake has, against an exchange that is not there, fails; the endpoint
    shows both outcomes, run times, the last success and the next runs; SIGTERM stops it with exit code 0."""
    from continuum.lake import Lake
    from continuum.schema import Candle
    from tests.services.cli import cli_env, cli_process, terminate
    from tests.services.prometheus import free_port, scrape_until

    Lake(tmp_path / "lake").append_events([Candle("binance", "BTC/USDT", "1h", 1_714_521_600_000, 1, 1, 1, 1, 0)])
    d = tmp_path / "ck"
    files = _files(d, 4)
    port, dead = free_port(), free_port()
    env = cli_env(CONTINUUM_LAKE__ROOT=str(tmp_path / "lake"))
    args = ["scheduler", "--now", "retention,backfill", "--keep", "1", "--checkpoint-dir", str(d),
            "--exchange-url", f"http://127.0.0.1:{dead}", "--metrics-port", str(port)]  # fmt: skip
    t_start = time.time()
    runs = lambda job, outcome: ("continuum_job_runs_total", (("job", job), ("outcome", outcome)))  # noqa: E731
    with cli_process(args, tmp_path, env) as p:
        m = scrape_until(p, port, lambda m: m.get(runs("retention", "ok")) and m.get(runs("backfill", "error")))
        _, err = terminate(p)
    assert p.returncode == 0, err[-2000:]
    assert [f.name for f in d.iterdir()] == [files[-1].name]
    assert m[runs("retention", "ok")] == 1 and m[runs("backfill", "error")] == 1
    assert m.get(runs("backfill", "ok"), 0) == 0 and m.get(runs("nightly", "ok"), 0) == 0
    assert m[("continuum_job_seconds_count", (("job", "retention"),))] == 1
    assert t_start <= m[("continuum_job_last_success_timestamp_seconds", (("job", "retention"),))] <= time.time()
    last_backfill = m[("continuum_job_last_success_timestamp_seconds", (("job", "backfill"),))]
    assert last_backfill != last_backfill  # NaN: it never succeeded
    nxt = {j: m[("continuum_job_next_run_timestamp_seconds", (("job", j),))] for j in ("backfill", "retention",
                                                                                        "nightly")}  # fmt: skip
    assert all(t_start < t <= t_start + 86_400 for t in nxt.values()), nxt
    assert datetime.fromtimestamp(nxt["nightly"], UTC).strftime("%H:%M") == "02:00"
