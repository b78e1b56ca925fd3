"""The engine's outputs pinned on fixed inputs, so a faster engine can be shown to compute the same numbers.

``engine_pinned.npz`` holds every array of ``run_backtest``'s result on the seeded cases below, written by
the bar-by-bar engine as it stood before it was vectorised (commit 7549223, "Pin the backtest engine's
outputs"; the case ``daily_band`` was added later, written by that same engine).
The cases cover what makes a bar's weights depend on the last: gaps, "no order" NaNs on some assets only,
shorts, a rebalance band, square-root impact, targets re-set once a day, a start and an end inside the
panel, and a book wiped out by a leveraged short. Regenerate only on purpose (a change of what the engine
computes, not of how fast):

    PYTHONPATH=. python tests/strategies/test_engine_pinned.py --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from strategies.backtest import BacktestResult, drift_book, run_backtest, step_book
from strategies.costs import CostModel
from strategies.market import bar_returns

PINNED = Path(__file__).parent / "data" / "engine_pinned.npz"
FIELDS = ("times", "mark_times", "weights", "turnover", "cost", "gross", "net", "equity")
HOUR = 3_600_000


def _panel(seed: int, T: int = 300, B: int = 4, gaps: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(times, close): a seeded random walk with ``gaps`` of its bars missing."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (T, B)), axis=0))
    close[rng.random((T, B)) < gaps] = np.nan
    return np.arange(T, dtype=np.int64) * HOUR, close


def _targets(seed: int, shape: tuple[int, int], lo: float, no_order: float) -> np.ndarray:
    """Targets in [lo, 1/B] per asset, with ``no_order`` of them NaN (keep the holding)."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(lo, 1.0, shape) / shape[1]
    target[rng.random(shape) < no_order] = np.nan
    return target


def cases() -> dict[str, tuple[tuple, dict]]:
    """Name -> (positional args, keyword args) of ``run_backtest``, all seeded."""
    times, close = _panel(0)
    mixed = _targets(1, close.shape, -1.0, 0.1)
    _, clean = _panel(2, gaps=0.0)
    hourly = _targets(3, clean.shape, 0.0, 0.0)
    daily = _targets(4, close.shape, -1.0, 0.0)
    daily[np.arange(len(daily)) % 24 != 0] = np.nan
    rng = np.random.default_rng(5)
    adv = rng.uniform(1e6, 1e8, close.shape)
    adv[:30, 1] = np.nan  # no liquidity known yet for one asset
    sigma = rng.uniform(0.02, 0.06, close.shape)
    blow = np.array([[100.0], [100.0], [170.0], [150.0], [160.0], [150.0]])  # a -2x short through a +70% bar
    short = np.array([[-2.0], [np.nan], [np.nan], [0.5], [0.5], [np.nan]])
    return {
        "mixed": ((times, close, mixed, 0), {}),
        "hourly": ((times, clean, hourly, 0), {"fee_bps": 12.0, "slippage_bps": 0.0}),
        "daily": ((times, close, daily, 3), {}),
        "band": ((times, close, mixed, 0), {"band": 0.02}),
        "daily_band": ((times, close, daily, 3), {"band": 0.02}),  # few bars with orders
        "impact": ((times, close, mixed, 0), {"impact_k": 0.5, "adv": adv, "sigma_daily": sigma}),
        "window": ((times, close, mixed, 7), {"end": 280}),
        "wiped_out": ((np.arange(6) * HOUR, blow, short, 0), {}),
    }


def _arrays(res: BacktestResult) -> dict[str, np.ndarray]:
    return {f: getattr(res, f) for f in FIELDS}


def write() -> None:
    """Run every case and store its result arrays (the reference later engines are held to)."""
    out = {f"{name}/{f}": v for name, (a, kw) in cases().items() for f, v in _arrays(run_backtest(*a, **kw)).items()}
    PINNED.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED, **out)


@pytest.mark.parametrize("name", list(cases()))
def test_engine_reproduces_its_pinned_outputs(name):
    """Every result array equal to the pinned one to float rounding (1e-12 relative)."""
    args, kwargs = cases()[name]
    got = _arrays(run_backtest(*args, **kwargs))
    with np.load(PINNED) as pinned:
        for f in FIELDS:
            np.testing.assert_allclose(got[f], pinned[f"{name}/{f}"], rtol=1e-12, atol=1e-15, err_msg=f"{name}/{f}")


@pytest.mark.parametrize("band", [0.0, 0.02])
@pytest.mark.parametrize("seed", range(20))
def test_the_vectorised_engine_is_the_stepped_one(seed, band):
    """Without impact ``drift_book`` must give ``step_book``'s book, whichever ``run_backtest`` would pick: random
    gaps, an asset listed late, "no order" NaNs, targets of 0, bars where no, some or every asset trades, shorts
    and leverage up to 3x (so some books are wiped out), with and without a band."""
    rng = np.random.default_rng(100 + seed)
    T, B = int(rng.integers(2, 400)), int(rng.integers(1, 9))
    _, close = _panel(seed, T, B, gaps=rng.choice([0.0, 0.02, 0.3]))
    close *= np.exp(np.cumsum(rng.normal(0.0, rng.choice([0.01, 0.3]), (T, B)), axis=0))
    close[: int(rng.integers(0, T)), 0] = np.nan  # an asset listed late
    target = rng.uniform(-3.0, 3.0, (T, B)) / B
    target[rng.random((T, B)) < rng.choice([0.0, 0.3])] = 0.0  # out of the asset: it holds exactly nothing
    target[rng.random((T, B)) < rng.choice([0.0, 0.1, 0.9])] = np.nan  # per asset
    target[rng.random(T) < rng.choice([0.0, 0.5, 0.95])] = np.nan  # whole bars
    r, do = bar_returns(close), np.isfinite(close) & np.isfinite(target)
    w, u, g = drift_book(r, do, target, band)
    w0, u0, g0, _ = step_book(r, np.isfinite(close), target, band, CostModel(), None, None)
    np.testing.assert_allclose(w, w0, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(u, u0, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-13)
    assert np.all(u[~do.any(axis=1)] == 0.0)  # a bar without trades costs exactly nothing, as there


@pytest.mark.parametrize("k", range(4))
def test_a_book_wiped_out_on_any_bar_up_to_the_last(k):
    """A -2x short through a +70% bar k of 4 (k = 3: the last), a new trade on a later bar: both agree."""
    r = np.zeros((4, 1))
    r[k] = 0.7
    r[(k + 1) % 4] = 0.1
    target = np.full((4, 1), np.nan)
    target[k] = -2.0
    target[(k + 2) % 4] = 0.5
    got = drift_book(r, np.isfinite(target), target)
    want = step_book(r, np.ones(r.shape, bool), target, 0.0, CostModel(), None, None)[:3]
    assert want[2][k] == pytest.approx(-1.4)  # 1 + gross = -0.4: wiped out
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
        print(f"wrote {PINNED}")
