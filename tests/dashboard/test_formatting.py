"""The dashboard's backtest tables: fractions shown as percentages, "—" where there is no figure."""

from __future__ import annotations

from dashboard.formatting import interval, metric_frame, num, pct


def test_fractions_read_as_percentages():
    assert pct(14.93) == "+1,493.0%"
    assert pct(-0.4512) == "-45.1%"
    assert pct(0.3, signed=False) == "30.0%"
    assert pct(None) == "—" and pct(float("nan")) == "—"
    assert num(36.6123) == "36.61" and num(-1.0) == "-1.00" and num(None) == "—"


def test_metric_frame_formats_every_column():
    rows = {
        "buy_and_hold": {"return": 14.93, "annual_return": 1.2, "sharpe": 1.234, "max_drawdown": 0.81,
                         "hit_rate": 0.52, "turnover": 0.01, "exposure": 1.0, "costs": 0.0012, "bars": 40000},
        "blip": {"return": 0.02, "annual_return": None, "sharpe": None, "max_drawdown": 0.01, "bars": 4},
    }  # fmt: skip
    f = metric_frame(rows, "strategy")
    assert f.columns == ["strategy", "return", "CAGR", "Sharpe", "max DD", "hit rate", "turnover/d", "exposure",
                         "costs", "bars"]  # fmt: skip
    a, b = f.row(0, named=True), f.row(1, named=True)
    assert a == {"strategy": "buy_and_hold", "return": "+1,493.0%", "CAGR": "+120.0%", "Sharpe": "1.23",
                 "max DD": "81.0%", "hit rate": "52.0%", "turnover/d": "0.01", "exposure": "100.0%",
                 "costs": "0.1%", "bars": "40,000"}  # fmt: skip
    assert b["CAGR"] == "—" and b["Sharpe"] == "—" and b["return"] == "+2.0%" and b["hit rate"] == "—"


def test_new_measures_and_files_from_before_them():
    assert interval([0.1234, -2.5]) == "[+0.12, -2.50]" and interval(None) == "—" and interval([None, 1.0]) == "—"
    rows = {"s": {"return": 0.5, "cagr": 0.2, "sharpe": 1.0, "sharpe_ci": [-0.5, 2.5], "sortino": 1.4,
                  "calmar": 0.7, "max_drawdown": 0.3, "psr": 0.91, "dsr": 0.42, "skew": -0.31, "kurtosis": 7.04,
                  "bars": 9000}}  # fmt: skip
    f = metric_frame(rows, "strategy")
    assert f.columns == ["strategy", "return", "CAGR", "Sharpe", "Sharpe 95% CI", "Sortino", "Calmar", "max DD",
                         "PSR", "DSR", "skew", "kurtosis", "bars"]  # fmt: skip
    assert f.row(0)[1:] == ("+50.0%", "+20.0%", "1.00", "[-0.50, +2.50]", "1.40", "0.70", "30.0%", "0.91", "0.42",
                            "-0.31", "7.0", "9,000")  # fmt: skip
    # a backtest.json written before CAGR had its name still shows it under CAGR
    old = metric_frame({"s": {"return": 0.5, "annual_return": 0.2}}, "strategy")
    assert old.columns == ["strategy", "return", "CAGR"] and old["CAGR"][0] == "+20.0%"


def test_durations_in_words():
    from dashboard.formatting import duration

    assert duration(0) == "0 s"
    assert duration(42.4) == "42 s"
    assert duration(4_380) == "1 h 13 min"
    assert duration(3_600) == "1 h"
    assert duration(86_400 * 889 + 3_600 * 4 + 59) == "889 d 4 h"
    assert duration(-90) == "-1 min 30 s"
    assert duration(None) == "—"
