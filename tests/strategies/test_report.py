"""What ``report`` and ``tearsheet`` draw: log-scale equity (a losing strategy is not a flat line), every
tearsheet panel and its table, the curves computed from the same numbers as the metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest

from learner.evaluation.regimes import DEFAULT_REGIMES as DEFAULT
from learner.evaluation.regimes import Regime
from strategies.report import equity_figure, write_plot

HOUR = 3_600_000


def _equity() -> pl.DataFrame:
    """A winner (x15) and a loser (down to 2% of its start) over 1000 hours."""
    t0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ts = t0 + np.arange(1000, dtype=np.int64) * HOUR
    return pl.concat(
        [
            pl.DataFrame({"ts": ts, "strategy": "winner", "equity": np.geomspace(1.0, 15.0, 1000)}),
            pl.DataFrame({"ts": ts, "strategy": "loser", "equity": np.geomspace(1.0, 0.02, 1000)}),
        ]
    )


def test_equity_plot_is_on_a_log_scale(tmp_path):
    regimes = (Regime("r", datetime(2020, 1, 10, tzinfo=UTC), datetime(2020, 1, 20, tzinfo=UTC)),)
    fig = equity_figure(_equity(), regimes, "t")
    try:
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        lo, hi = ax.get_ylim()
        assert lo <= 0.02 and hi >= 15.0  # the loser's whole fall is on the axis, not squashed at zero
    finally:
        plt.close(fig)
    write_plot(_equity(), regimes, tmp_path / "equity.png")
    assert (tmp_path / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(fp):
    """A real backtest document and equity frame: the bundled 2019 slice, forecasts from trailing returns."""
    from strategies.backtest import backtest_from_preds

    preds = np.full(fp.y.shape, np.nan, dtype=np.float32)
    preds[200:, :, 1] = np.sign(np.nan_to_num(fp.y[199:-1, :, 0]))  # yesterday's sign: a losing churner
    preds[200:, :, 0] = preds[200:, :, 2] = 0.0
    return backtest_from_preds(fp, preds, DEFAULT)


def test_tearsheet_series_match_the_metrics(fp):
    from strategies.tearsheet import series

    doc, equity = _run(fp)
    s = series(equity, window_days=30)
    for name, part in s.group_by("strategy", maintain_order=True):
        t = doc["strategies"][name[0]]["total"]
        assert -part["drawdown"].min() == pytest.approx(t["max_drawdown"])
        assert part["cum_cost"][-1] == pytest.approx(t["costs"])
        # the last rolling Sharpe is the Sharpe of the last 30 days of net returns
        net = np.diff(part["equity"].to_numpy()) / part["equity"].to_numpy()[:-1]
        last = net[-720:]
        want = last.mean() / last.std(ddof=1) * np.sqrt(24 * 365) if last.std() > 0 else None
        got = part["rolling_sharpe"][-1]
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-6)
        assert part["rolling_sharpe"][:719].is_null().all()  # no figure before a full window


def test_tearsheet_has_every_panel_and_the_table(fp, tmp_path):
    from strategies.tearsheet import TABLE, figure, write_tearsheet

    doc, equity = _run(fp)
    fig = figure(doc, equity, DEFAULT, "t")
    try:
        panels = [ax for ax in fig.axes if ax.lines]
        labels = [ax.get_ylabel() for ax in panels]
        assert len(panels) == 5 and labels[0].startswith("equity") and panels[0].get_yscale() == "log"
        assert [lab.split()[0] for lab in labels[1:]] == ["drawdown", "Sharpe,", "turnover", "costs"]
        assert all(len(ax.lines) >= len(doc["strategies"]) for ax in panels)
        # percentages as percentages on the drawdown and cost axes, and in the table
        fig.canvas.draw()
        assert all(t.get_text().endswith("%") for t in panels[1].get_yticklabels() if t.get_text())
        cells = fig.axes[-1].tables[0].get_celld()
        head = [cells[0, c].get_text().get_text() for c in range(len(TABLE) + 2)]
        assert head[:3] == ["strategy", "stretch", "return"] and "DSR" in head
        row = {head[c]: cells[1, c].get_text().get_text() for c in range(len(head))}
        total = doc["strategies"]["buy_and_hold"]["total"]
        assert row["strategy"] == "buy_and_hold" and row["stretch"] == "total"
        assert row["return"] == f"{total['return']:+,.1%}" and row["max DD"] == f"{total['max_drawdown']:.1%}"
        # legible: no two tick labels of the time axis overlap
        boxes = [t.get_window_extent() for t in panels[-1].get_xticklabels() if t.get_text()]
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
    finally:
        plt.close(fig)
    write_tearsheet(doc, equity, DEFAULT, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tearsheet_reads_an_equity_file_from_before_it(fp):
    """equity.parquet written before turnover/cost were added: the panels that need them are left out."""
    from strategies.tearsheet import figure

    doc, equity = _run(fp)
    fig = figure(doc, equity.select("ts", "strategy", "equity"), DEFAULT)
    try:
        assert len([ax for ax in fig.axes if ax.lines]) == 3
    finally:
        plt.close(fig)
