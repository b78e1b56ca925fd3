"""What ``report`` draws: the equity plot reads on a log scale, so a losing strategy is not a flat line."""

from __future__ import annotations

from datetime import UTC, datetime

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

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
