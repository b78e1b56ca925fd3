"""``continuum backtest`` end to end on a real slice: an online model streamed live, every output file."""

from __future__ import annotations

import json

import polars as pl
import pytest

from commands.cli import build_parser, main
from continuum.schema import direction_of
from strategies.positions import STRATEGIES

SLICE = ["--symbols", "BTC/USDT,ETH/USDT", "--start", "2019-01-01", "--end", "2019-05-01"]
SLICE += ["--pretrain-until", "2019-02-15", "--quiet"]
KEYS = {"return", "sharpe", "max_drawdown", "hit_rate", "turnover"}
MEASURES = {"cagr", "sortino", "calmar", "costs", "psr", "dsr", "sharpe_ci", "skew", "kurtosis"}  # issue 13


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """river_linear (it forecasts returns, so the signal strategies trade), streamed from 2019-02-15."""
    out = tmp_path_factory.mktemp("bt")
    assert main(["backtest", "--out", str(out), "--model", "river_linear", *SLICE]) == 0
    return out


def test_writes_every_output_in_the_dashboard_contract(run_dir):
    doc = json.loads((run_dir / "backtest.json").read_text())
    assert set(doc["strategies"]) == set(STRATEGIES) >= {"buy_and_hold", "signal_tanh", "mv_partial", "mv_band"}
    for s in doc["strategies"].values():
        assert set(s["total"]) >= KEYS | MEASURES
        assert list(s["per_regime"]) == ["2019 recovery"]  # the slice lies inside one regime
        assert set(s["per_regime"]["2019 recovery"]) >= KEYS | MEASURES
    bh = doc["strategies"]["buy_and_hold"]["total"]
    assert 0 <= bh["dsr"] <= bh["psr"] <= 1 and bh["sharpe_ci"][0] < bh["sharpe"] < bh["sharpe_ci"][1]
    assert doc["trials"]["n"] == doc["trials"]["in_run"] == len(STRATEGIES) and doc["trials"]["declared"] is None
    assert doc["range"]["start"].startswith("2019-02-15T00:00")  # trading starts at the pre-training cut
    assert doc["assumptions"]["fee_bps"] == 10 and doc["assumptions"]["slippage_bps"] == 2
    sig = doc["strategies"]["signal_tanh"]["total"]
    assert sig["turnover"] > 0.1 and sig["costs"] > 0  # the model's forecasts did drive trades
    eq = pl.read_parquet(run_dir / "equity.parquet")
    assert eq.schema == {
        "ts": pl.Int64, "strategy": pl.String, "equity": pl.Float64, "turnover": pl.Float64, "cost": pl.Float64,
    }  # fmt: skip
    for name, part in eq.group_by("strategy"):  # per bar, the trades' turnover and cost add up to the totals
        t = doc["strategies"][name[0]]["total"]
        assert part["cost"].sum() == pytest.approx(t["costs"]) and part["turnover"][-1] == 0.0
        assert part["turnover"].sum() / (t["bars"] / 24) == pytest.approx(t["turnover"])
    first = eq.group_by("strategy").agg(pl.col("equity").first(), pl.col("ts").first())
    assert (first["equity"] == 1.0).all()
    last = eq.group_by("strategy").agg(pl.col("equity").last()).sort("strategy")
    for name, e in last.iter_rows():
        assert e == pytest.approx(1 + doc["strategies"][name]["total"]["return"])
    report = (run_dir / "report.md").read_text()
    for needle in ("## Totals", "## Per regime", "2019 recovery", "fills: at the close", "fee bps: 10.0", "slippage"):
        assert needle in report
    for png in ("equity.png", "tearsheet.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![tearsheet](tearsheet.png)" in report and "## Is the Sharpe ratio luck?" in report
    sigs = pl.read_parquet(run_dir / "signals.parquet")
    assert sigs["ts"].min() >= 1550188800000 and (sigs["vol_24h"] > 0).all()
    assert sigs.select(pl.col(pl.Float64).is_nan().any()).sum_horizontal().item() == 0
    # each signal carries the feed rule's target weight, its side and a confidence in 0..1
    assert sigs["weight"].is_not_null().all() and sigs["confidence"].is_between(0, 1).all()
    assert sigs["direction"].to_list() == [direction_of(w) for w in sigs["weight"].to_list()]
    assert {"long", "short"} <= set(sigs["direction"])
    assert "notes" not in doc


def test_saved_signals_reproduce_the_run_and_fees_only_cost(run_dir, tmp_path):
    base = json.loads((run_dir / "backtest.json").read_text())["strategies"]
    again = tmp_path / "again"
    sig = str(run_dir / "signals.parquet")
    assert main(["backtest", "--out", str(again), "--signals", sig, "--trials", "100", *SLICE]) == 0
    full = json.loads((again / "backtest.json").read_text())
    assert full["model"] == "river_linear" and "read from" in full["source"]
    # 100 variants tried (declared), not just the strategies of the run: the same Sharpe ratios, deflated further
    assert (full["trials"]["n"], full["trials"]["in_run"], full["trials"]["declared"]) == (100, len(STRATEGIES), 100)
    for name in base:
        if base[name]["total"]["dsr"] is not None:
            assert full["strategies"][name]["total"]["dsr"] < base[name]["total"]["dsr"], name
    doc = full["strategies"]
    for name in base:
        for k in KEYS:
            assert doc[name]["total"][k] == pytest.approx(base[name]["total"][k], rel=1e-4, abs=1e-9), (name, k)
    free = tmp_path / "free"
    costless = ["--fee-bps", "0", "--slippage-bps", "0"]
    assert main(["backtest", "--out", str(free), "--signals", sig, *costless, *SLICE]) == 0
    nofee = json.loads((free / "backtest.json").read_text())["strategies"]
    for name in base:
        assert nofee[name]["total"]["costs"] == 0.0
        if STRATEGIES[name].cost_aware:  # free trading: the no-trade region vanishes, so it trades more
            assert nofee[name]["total"]["turnover"] >= base[name]["total"]["turnover"] - 1e-12
            continue
        assert nofee[name]["total"]["turnover"] == pytest.approx(base[name]["total"]["turnover"], rel=1e-4)
        if base[name]["total"]["turnover"] > 0:
            assert nofee[name]["total"]["return"] > base[name]["total"]["return"]
    assert nofee["mv_band"]["total"]["turnover"] > 2 * base["mv_band"]["total"]["turnover"]


def test_impact_costs_more_the_bigger_the_book(run_dir, tmp_path):
    """--impact-k charges square-root impact on top of fees: more for a bigger --capital, none without trades."""
    sig = str(run_dir / "signals.parquet")
    base = json.loads((run_dir / "backtest.json").read_text())["strategies"]
    docs = {}
    for capital in ("1e6", "1e9"):
        out = tmp_path / capital
        argv = ["backtest", "--out", str(out), "--signals", sig, "--impact-k", "0.7", "--capital", capital, *SLICE]
        assert main(argv) == 0
        docs[capital] = json.loads((out / "backtest.json").read_text())
    a = docs["1e9"]["assumptions"]
    assert a["impact_k"] == 0.7 and a["capital"] == 1e9 and "sqrt" in a["cost_model"]
    small, big = docs["1e6"]["strategies"], docs["1e9"]["strategies"]
    for name in ("signal_tanh", "vol_target_long"):  # same trades (not cost-aware), dearer
        assert base[name]["total"]["turnover"] == pytest.approx(big[name]["total"]["turnover"], rel=1e-9)
        assert base[name]["total"]["costs"] < small[name]["total"]["costs"] < big[name]["total"]["costs"]
    assert big["buy_and_hold"]["total"]["costs"] > base["buy_and_hold"]["total"]["costs"]  # even the entry


def test_a_variance_only_model_says_why_signals_stay_flat(tmp_path, capsys):
    assert main(["backtest", "--out", str(tmp_path), "--model", "har", *SLICE]) == 0
    doc = json.loads((tmp_path / "backtest.json").read_text())
    assert doc["strategies"]["signal_sign"]["total"]["exposure"] == 0.0
    assert doc["strategies"]["vol_target_long"]["total"]["exposure"] > 0.3
    assert "variance only" in doc["notes"][0] and "variance only" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fee-bps", "-1"], "--fee-bps"),
        (["--impact-k", "-0.5"], "--impact-k"),
        (["--capital", "0"], "--capital"),
        (["--strategies", "momentum"], "unknown strategy"),
        (["--signals", "/nonexistent/signals.parquet"], "no parquet file"),
        (["--model", "hopee"], "unknown model"),
        (["--pretrain-until", "2019-04-28"], "less than two weeks"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert main(["backtest", "--out", str(tmp_path / "x"), *SLICE, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_help_teaches_with_examples():
    sub = build_parser()._subparsers._group_actions[0].choices["backtest"]
    text = sub.format_help()
    for needle in ("examples:", "--signals", "--pretrain-until", "buy_and_hold", "assumptions", "--impact-k"):
        assert needle in text
    for name in STRATEGIES:  # every strategy is explained in the epilog
        assert f"\n  {name} " in text, name


def test_trials_must_count_at_least_one(tmp_path, capsys):
    assert main(["backtest", "--out", str(tmp_path), "--trials", "0", *SLICE]) == 2
    assert "--trials must be at least 1" in capsys.readouterr().err
