"""Every dashboard page under Streamlit's AppTest, on fixture data derived from real candles and transfers."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from continuum.lake import Lake
from dashboard.formatting import pct

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _page(path: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if path:
        at.switch_page(path)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [x.value for x in at.info] + [x.value for x in at.warning] + [x.value for x in at.success]
    parts += [x.value for x in at.error] + [x.value for x in at.subheader]
    return "\n".join(str(p) for p in parts)


def test_signals_page_shows_latest_forecast_per_asset(dash_env):
    at = _page()
    assert at.title[0].value == "Signals"
    table = at.dataframe[0].value
    assert sorted(table["symbol"].tolist()) == ["BTC/USDT", "ETH/USDT"]
    # the latest row per asset in the lake is what the table shows
    sig = Lake(dash_env["lake"]).read("signal")
    sym = sig["symbol"][0]
    last = sig.filter(pl.col("symbol") == sym).sort("ts").row(-1, named=True)
    row = table[table["symbol"] == sym].iloc[0]
    assert row["24h %"] == pytest.approx(last["ret_24h"] * 100)
    assert "± 24h %" not in table.columns  # it would repeat "vol 24h %": a 24h forecast's std is the vol forecast
    assert row["side"] in ("up", "down") and row["weight %"] != row["weight %"]  # v1 rows: the sign, no weight
    assert len(at.get("vega_lite_chart")) == 2
    # tightening the threshold to 0 raises an alert for every asset
    at.sidebar.number_input[0].set_value(0.0).run()
    assert len(at.warning) == 2


def test_signals_page_shows_the_feeds_side_weight_and_confidence(dash_env, tmp_path, monkeypatch):
    import shutil

    from continuum.schema import Signal

    lake_dir = tmp_path / "lake"
    shutil.copytree(dash_env["lake"], lake_dir)
    lake = Lake(lake_dir)
    last = lake.read("signal").filter(pl.col("symbol") == "ETH/USDT").sort("ts").row(-1, named=True)
    newer = Signal(
        model=last["model"], exchange=last["exchange"], symbol="ETH/USDT", ts=last["ts"] + 3_600_000,
        ret_1h=0.001, ret_24h=-0.02, vol_24h=0.04, ret_1h_std=0.04 / 24**0.5, ret_24h_std=0.04, regime="calm",
        direction="short", weight=-0.05, confidence=0.38,
    )  # fmt: skip
    lake.append_events([newer])
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(lake_dir))
    table = _page().dataframe[0].value
    eth = table[table["symbol"] == "ETH/USDT"].iloc[0]
    assert (eth["side"], eth["weight %"], eth["confidence %"]) == ("short", pytest.approx(-5.0), pytest.approx(38.0))
    assert eth["24h %"] == pytest.approx(-2.0) and eth["vol 24h %"] == pytest.approx(4.0)
    btc = table[table["symbol"] == "BTC/USDT"].iloc[0]  # still v1 rows only
    assert btc["side"] in ("up", "down")


def test_signals_page_says_when_return_forecasts_are_calibrated(dash_env, tmp_path, monkeypatch):
    """A signal whose activity carries the return calibration's multiple: the forecast chart says so."""
    import shutil

    from continuum.schema import Signal

    lake_dir = tmp_path / "lake"
    shutil.copytree(dash_env["lake"], lake_dir)
    lake = Lake(lake_dir)
    at = _page()
    assert "calibrated online" not in _text(at)  # the fixture's signals predate the calibration
    symbol = at.selectbox(key="asset").value
    last = lake.read("signal").filter(pl.col("symbol") == symbol).sort("ts").row(-1, named=True)
    newer = Signal(
        model=last["model"], exchange=last["exchange"], symbol=symbol, ts=last["ts"] + 3_600_000,
        ret_1h=0.0, ret_24h=0.003, vol_24h=0.04, ret_1h_std=0.04 / 24**0.5, ret_24h_std=0.04, regime="calm",
        activity={"ret_calib_1h": 0.2, "ret_calib_24h": 0.34},
    )  # fmt: skip
    lake.append_events([newer])
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(lake_dir))
    assert "raw 24h forecast × 0.34 at the last bar" in _text(_page())


def test_memory_page_plots_every_activity_key(dash_env):
    at = _page("views/memory.py")
    assert "Memory activity" in _text(at)
    summary = at.dataframe[0].value
    assert set(summary["key"]) == {"cms_l0_update_norm", "cms_l1_update_norm", "cms_l2_update_norm", "surprise"}
    assert len(at.get("vega_lite_chart")) == 2


def test_evaluation_page_reads_eval_and_backtest(dash_env):
    at = _page("views/evaluation.py")
    ev = json.loads((dash_env["eval"] / "evaluation.json").read_text())
    frames = [d.value for d in at.dataframe]
    totals = frames[0]
    assert set(totals["strategy"]) == {"ewma_long_flat", "buy_and_hold"}
    bt = json.loads((dash_env["backtest"] / "backtest.json").read_text())["strategies"]
    got = totals.set_index("strategy")
    for name, v in bt.items():  # fractions in the file, percentages on the page
        assert got.loc[name, "return"] == pct(v["total"]["return"])
        assert got.loc[name, "Sharpe"] == f"{v['total']['sharpe']:.2f}"
    # the equity chart is on a log scale (a loser is not a flat line at zero)
    spec = json.loads(next(c for c in at.get("vega_lite_chart") if "Equity curves" in c.proto.spec).proto.spec)
    ys = [lay["encoding"]["y"] for lay in spec.get("layer", [spec]) if "y" in lay.get("encoding", {})]
    assert [y["field"] for y in ys] == ["equity"] and ys[0]["scale"]["type"] == "log"
    cum = next(f for f in frames if "model" in f.columns and "ret_1h_mse" in f.columns)
    got = cum.set_index("model")["vol_24h_qlike"].to_dict()
    assert got == pytest.approx({m: v["cumulative"]["vol_24h_qlike"] for m, v in ev["models"].items()})
    # the tearsheet's panels: drawdown (in percent), rolling Sharpe, turnover and costs (in percent)
    specs = {json.loads(c.proto.spec).get("title"): json.loads(c.proto.spec) for c in at.get("vega_lite_chart")}
    dd = next(v for k, v in specs.items() if k and k.startswith("Drawdown"))
    assert any(lay.get("encoding", {}).get("y", {}).get("axis", {}).get("format") == ".0%" for lay in dd["layer"])
    assert any(k and k.startswith("Sharpe ratio, rolling 30 days") for k in specs)
    assert {"Turnover per day (7-day mean)", "Costs paid (cumulative)"} <= set(specs)
    # equity, the four tearsheet panels, cumulative error, and one R-matrix heatmap per model
    assert len(at.get("vega_lite_chart")) == 6 + len(ev["models"])
    assert "BWT" in _text(at)


def test_backtest_tables_show_percentages_and_dashes(dash_env, tmp_path, monkeypatch):
    """A +1,493% total and a 4-bar regime whose annualised figures are null in backtest.json."""
    short = {
        "return": 0.02,
        "cagr": None,
        "sharpe": None,
        "sortino": None,
        "max_drawdown": 0.01,
        "psr": None,
        "dsr": None,
        "sharpe_ci": None,
        "bars": 4,
    }
    total = {
        "return": 14.93,
        "cagr": 0.9,
        "sharpe": 1.5,
        "sortino": 2.25,
        "max_drawdown": 0.8,
        "psr": 0.97,
        "dsr": 0.62,
        "sharpe_ci": [0.1234, 2.9],
        "bars": 30000,
    }
    doc = {"strategies": {"hold": {"total": total, "per_regime": {"blip": short, "long": total}}},
           "trials": {"n": 12, "in_run": 4, "declared": 12, "total": {"expected_max_sharpe": 1.71}}}  # fmt: skip
    (tmp_path / "backtest.json").write_text(json.dumps(doc))
    monkeypatch.setenv("CONTINUUM_DASHBOARD_BACKTEST_DIR", str(tmp_path))
    at = _page("views/evaluation.py")
    totals, per = at.dataframe[0].value, at.dataframe[1].value
    row = totals.iloc[0]
    assert (row["return"], row["CAGR"], row["Sharpe"], row["max DD"]) == ("+1,493.0%", "+90.0%", "1.50", "80.0%")
    assert (row["Sortino"], row["PSR"], row["DSR"], row["Sharpe 95% CI"]) == ("2.25", "0.97", "0.62", "[+0.12, +2.90]")
    assert "best of 12 trials (--trials 12)" in _text(at) and "1.71" in _text(at)
    blip = per.set_index("regime").loc["blip"]
    assert (blip["return"], blip["CAGR"], blip["Sharpe"], blip["bars"]) == ("+2.0%", "—", "—", "4")
    assert (blip["Sortino"], blip["PSR"], blip["DSR"], blip["Sharpe 95% CI"]) == ("—", "—", "—", "—")


def test_forensics_page_traces_a_real_address(dash_env):
    at = _page("views/forensics.py")
    busiest = at.dataframe[0].value
    assert len(busiest) > 0
    at.text_input[0].input(busiest["address"].iloc[0]).run()
    assert not at.exception
    assert int(at.metric[0].value) > 0
    assert len(at.get("graphviz_chart")) == 1


def test_forensics_page_rejects_bad_checksum(dash_env):
    at = _page("views/forensics.py")
    at.text_input[0].input("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96046").run()
    assert "EIP-55" in at.error[0].value


def test_empty_states_say_what_to_run(tmp_path, monkeypatch):
    for var in ("LAKE", "EVAL_DIR", "BACKTEST_DIR"):
        monkeypatch.setenv(f"CONTINUUM_DASHBOARD_{var}", str(tmp_path / var.lower()))
    expected = [
        (None, "continuum demo"),
        ("views/memory.py", "continuum demo"),
        ("views/evaluation.py", "continuum evaluate"),
        ("views/forensics.py", "continuum import etl"),
    ]
    for page, needle in expected:
        assert needle in _text(_page(page)), page


@pytest.fixture(scope="module")
def hope_lake(tmp_path_factory) -> Path:
    """Signals as the demo writes them: Hope streamed in 8-bar calls, ``signals_frame``, ``Lake.append``."""
    import torch

    from learner.hope.config import HopeConfig
    from learner.hope.online import Hope
    from learner.signals import signals_frame
    from learner.stream import run_stream
    from tests.learner.synthetic import synthetic_panel

    torch.set_num_threads(1)
    fp = synthetic_panel(T=4 * 720 + 24, B=1, F=6, seed=3)
    model = Hope(HopeConfig(n_features=6))
    model.reset(1)
    res = run_stream(model, fp, chunk=8, record_activity=True)
    root = tmp_path_factory.mktemp("hope") / "lake"
    frame = signals_frame("hope", "binance", fp.symbols, fp.times, res.preds, fp.sigma, fp.mask, res.activity)
    Lake(root).append("signal", frame)
    return root


def test_memory_page_counts_a_level_once_per_period(hope_lake, monkeypatch):
    """A level stepping every C bars is active on 1/C of the bars (not 8/C: once per 8-bar chunk)."""
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(hope_lake))
    at = _page("views/memory.py")
    summary = at.dataframe[0].value.set_index("key")
    bars = int(_text(at).split(" bars of ")[0].split()[-1])
    for level, period in enumerate((24, 168, 720)):
        share = summary.loc[f"cms_l{level}_update_norm", "share of bars active"]
        assert share == pytest.approx(1 / period, abs=1 / bars), level  # within one step of the window's edges
    assert summary.loc["mem_update_norm", "share of bars active"] > 0.99  # the Titans memory writes every bar


def _chart_layers(chart) -> list[tuple[str, pl.DataFrame]]:
    """(mark type, data) of each layer of a vega-lite chart element, its data decoded from Arrow."""
    import pyarrow as pa

    spec = json.loads(chart.proto.spec)
    data = {d.name: pl.from_arrow(pa.ipc.open_stream(d.data.data).read_all()) for d in chart.proto.datasets}
    out = []
    for lay in spec.get("layer", [spec]):
        mark = lay["mark"]["type"] if isinstance(lay["mark"], dict) else lay["mark"]
        out.append((mark, data[(lay.get("data") or spec["data"])["name"]]))
    return out


def test_memory_page_draws_slow_levels_as_points_where_they_stepped(hope_lake, monkeypatch):
    """A level that did nothing for 719 bars is no straight line across them: one point per step."""
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(hope_lake))
    at = _page("views/memory.py")
    chart = next(c for c in at.get("vega_lite_chart") if "Per-level update norms" in c.proto.spec)
    layers = dict(_chart_layers(chart))
    assert set(layers) == {"line", "circle"}
    assert set(layers["line"]["key"]) == {"mem_update_norm"}  # moves every bar: a line
    points = layers["circle"]
    assert set(points["key"]) == {"cms_l0_update_norm", "cms_l1_update_norm", "cms_l2_update_norm"}
    assert (points["value"] > 0).all()
    summary = at.dataframe[0].value.set_index("key")
    steps = points.group_by("key").len().to_dict(as_series=False)
    assert dict(zip(steps["key"], steps["len"], strict=True)) == {
        k: int(summary.loc[k, "bars active"]) for k in steps["key"]
    }


def test_lake_readers_notice_an_appended_added_or_deleted_partition_file(dash_env, tmp_path, monkeypatch):
    """The cache key is a stamp of the lake's files: every write a learner makes is read on the next rerun."""
    import shutil

    from continuum.schema import Signal
    from dashboard import data

    lake_dir = tmp_path / "lake"
    shutil.copytree(dash_env["lake"], lake_dir)
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(lake_dir))
    lake = Lake(lake_dir)
    n = data.signals().height
    last = lake.read("signal").sort("ts").row(-1, named=True)

    def signal(symbol: str, ts: int) -> Signal:
        return Signal(model=last["model"], exchange="binance", symbol=symbol, ts=ts, ret_1h=0.0, ret_24h=0.01,
                      vol_24h=0.03, ret_1h_std=0.03 / 24**0.5, ret_24h_std=0.03, regime="calm")  # fmt: skip

    lake.append_events([signal(last["symbol"], last["ts"] + 3_600_000)])  # into an existing partition file
    assert data.signals().height == n + 1
    lake.append_events([signal("SOL/USDT", last["ts"])])  # a new partition file
    assert data.signals().height == n + 2 and "SOL/USDT" in data.signals()["symbol"].to_list()
    lake.delete("signal", pl.col("symbol") == "SOL/USDT")  # the file goes
    assert data.signals().height == n + 1


def _write_alerts(lake_dir: Path, rows: list[dict]) -> None:
    """The ``alert`` table as ``continuum alerts`` writes it (coordinated by name and columns only)."""
    leaf = lake_dir / "kind=alert" / "month=2023-02" / "data.parquet"
    leaf.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(leaf)


def test_signals_page_shows_lag_regime_switches_and_the_lakes_alerts(dash_env, tmp_path, monkeypatch):
    import shutil
    from datetime import UTC, datetime

    lake_dir = tmp_path / "lake"
    shutil.copytree(dash_env["lake"], lake_dir)
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(lake_dir))
    at = _page()
    sig = Lake(lake_dir).read("signal")
    last = int(sig["ts"].max())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Latest bar (UTC)"] == f"{datetime.fromtimestamp(last / 1000, UTC):%Y-%m-%d %H:%M}"
    # lag: now minus the latest bar's close (open + 1 h), in words and in seconds
    lag_s = datetime.now(UTC).timestamp() - (last + 3_600_000) / 1000
    shown = next(c.value for c in at.caption if c.value.startswith("Lag "))
    assert abs(float(shown.split()[1].replace(",", "")) - lag_s) < 120 and "bars behind" in shown
    assert metrics["Lag"].split()[1] == "d"  # months old fixture data: days first
    # regime switches: the newest bars where an asset's regime reading changed
    switches = next(d.value for d in at.dataframe if "from" in d.value.columns)
    want = (
        sig.sort("symbol", "ts")
        .with_columns(pl.col("regime").shift(1).over("symbol").alias("prev"))
        .filter(pl.col("prev").is_not_null() & (pl.col("prev") != pl.col("regime")))
        .sort("ts", descending=True)
        .head(len(switches))
    )
    assert switches["symbol"].tolist() == want["symbol"].to_list()
    assert switches["to"].tolist() == want["regime"].to_list()
    # no alert table in the lake: no Alerts panel
    assert "Alerts" not in [s.value for s in at.subheader]

    rows = [
        {"ts": last - 60_000, "rule": "signal_threshold", "symbol": "BTC/USDT", "severity": "warning",
         "message": "BTC/USDT 24h forecast +2.1% is 1.3 std from zero", "key": "a1"},
        {"ts": last, "rule": "regime_switch", "symbol": "ETH/USDT", "severity": "info",
         "message": "ETH/USDT calm -> volatile", "key": "a2"},
    ]  # fmt: skip
    _write_alerts(lake_dir, rows)
    at = _page()
    assert "Alerts" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "message" in d.value.columns)
    assert table["message"].tolist() == [rows[1]["message"], rows[0]["message"]]  # newest first
    assert table["severity"].tolist() == ["info", "warning"]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> dict[str, Path]:
    """A real ``continuum demo`` on a small slice; the dashboard's paths as the demo tells the user to open it."""
    import contextlib
    import io
    import os
    import shlex

    import torch

    from commands.cli import main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo")
    old = os.environ.get("CONTINUUM_LAKE__ROOT")
    os.environ["CONTINUUM_LAKE__ROOT"] = str(root / "lake")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            argv = ["demo", "--symbols", "BTC/USDT,ETH/USDT,SOL/USDT", "--start", "2022-11-01", "--end", "2023-02-01"]
            assert main([*argv, "--out", str(root / "demo"), "--quiet"]) == 0
    finally:
        if old is None:
            os.environ.pop("CONTINUUM_LAKE__ROOT")
        else:
            os.environ["CONTINUUM_LAKE__ROOT"] = old
    line = next(ln for ln in printed.getvalue().splitlines() if "open the dashboard:" in ln)
    args = shlex.split(line.split("open the dashboard:", 1)[1])
    opts = dict(zip(args[2::2], args[3::2], strict=True))  # continuum dashboard --lake L --backtest-dir B ...
    return {
        "lake": Path(opts["--lake"]),
        "eval": Path(opts.get("--eval-dir", ".continuum/demo/eval")),
        "backtest": Path(opts["--backtest-dir"]),
        "report": root / "demo" / "report.md",
    }


def test_evaluation_tab_shows_the_demos_evaluation(demo_out, monkeypatch):
    """After `continuum demo`, opened as the demo says, the Evaluation tab shows the demo's forecast errors."""
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(demo_out["lake"]))
    monkeypatch.setenv("CONTINUUM_DASHBOARD_EVAL_DIR", str(demo_out["eval"]))
    monkeypatch.setenv("CONTINUUM_DASHBOARD_BACKTEST_DIR", str(demo_out["backtest"]))
    at = _page("views/evaluation.py")
    assert "No evaluation in" not in _text(at)
    cum = next(d.value for d in at.dataframe if "model" in d.value.columns and "vol_24h_qlike" in d.value.columns)
    got = cum.set_index("model")["vol_24h_qlike"].to_dict()
    # the same numbers as the demo's report: hope and the naive reference, vol 24h QLIKE to 4 decimals
    rows = {
        ln.split("|")[1].strip(): float(ln.split("|")[3])
        for ln in demo_out["report"].read_text().splitlines()
        if ln.startswith("| hope |") or ln.startswith("| naive")
    }
    assert got["hope"] == pytest.approx(rows["hope"], abs=5e-5)
    assert got["naive (reference)"] == pytest.approx(rows["naive (zero return, last-week vol)"], abs=5e-5)
    # cumulative error over time, per regime (the slice crosses 2022 bear -> 2023-24 recovery)
    assert any("cumulative mean" in c.proto.spec for c in at.get("vega_lite_chart"))
    per = next(d.value for d in at.dataframe if "2023-24 recovery" in d.value.columns)
    assert set(per["model"]) == {"hope", "naive (reference)"} and "2022 bear" in per.columns
    assert "continuum evaluate" in _text(at)  # the R matrix needs held-out weeks: the page says which command
