"""Cost-aware rules and square-root impact: no look-ahead, the no-trade region, convergence, exact costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from learner.protocol import to_raw
from strategies.backtest import run_backtest
from strategies.costs import CostModel
from strategies.market import Market, market_from
from strategies.portfolio import Book, Rule, band_trade, mv_aim
from strategies.positions import STRATEGIES

NAN = np.nan
HOUR = 3_600_000
COST_AWARE = [n for n, s in STRATEGIES.items() if s.cost_aware]


def _flat(T: int, B: int, mu: float, sd: float) -> np.ndarray:
    """Raw forecasts (T, B, 3) constant over time: 24h mean ``mu``, 24h std ``sd``."""
    raw = np.zeros((T, B, 3))
    raw[..., 1] = mu
    raw[..., 2] = sd**2
    return raw


def _noisy_preds(fp, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    preds = rng.normal(0, 0.3, fp.y.shape).astype(np.float32)
    preds[:200] = NAN
    return np.where(fp.mask[..., None], preds, NAN)


def test_cost_aware_rules_ignore_the_future(fp):
    """Changing prices, volumes and forecasts after bar k changes no target or weight up to k (impact on)."""
    rng = np.random.default_rng(2)
    k = 1500
    preds = _noisy_preds(fp)
    costs = CostModel(10, 2, impact_k=1.0, capital=5e7)
    mk = market_from(fp, costs)
    fp2 = fp.slice(0, len(fp.times))
    fp2.close = fp.close.copy()
    fp2.close[k + 1 :] *= rng.uniform(0.5, 1.5, fp2.close[k + 1 :].shape)
    fp2.adv = fp.adv.copy()
    fp2.adv[k + 1 :] *= rng.uniform(0.1, 10, fp2.adv[k + 1 :].shape)
    preds2 = preds.copy()
    preds2[k + 1 :] = rng.normal(0, 1, preds2[k + 1 :].shape)
    mk2 = market_from(fp2, costs)
    raw, raw2 = to_raw(preds, fp.sigma), to_raw(preds2, fp.sigma)
    tradable = np.isfinite(fp.close)
    for name in COST_AWARE:
        rule = STRATEGIES[name].fn
        (t1, w1), (t2, w2) = rule.run(raw, tradable, 200, mk), rule.run(raw2, tradable, 200, mk2)
        np.testing.assert_array_equal(t1[: k + 1], t2[: k + 1], err_msg=name)
        np.testing.assert_array_equal(w1[: k + 1], w2[: k + 1], err_msg=name)
        assert not np.array_equal(w1[k + 2 :], w2[k + 2 :]), name  # the perturbation did bite
        r1 = run_backtest(
            fp.times, fp.close, t1, 200, impact_k=1.0, capital=5e7, adv=mk.adv, sigma_daily=mk.sigma_daily
        )
        r2 = run_backtest(
            fp.times, fp2.close, t2, 200, impact_k=1.0, capital=5e7, adv=mk2.adv, sigma_daily=mk2.sigma_daily
        )
        n = k - 200
        np.testing.assert_array_equal(r1.equity[: n + 1], r2.equity[: n + 1], err_msg=name)


def test_no_trade_region_suppresses_trades_when_edge_is_below_cost():
    """Shrunk edge 0.1 x 100 bps = 10 bps < 12 bps cost: never a trade. At 20 bps it buys to the band's edge."""
    rule = Rule("mv", "band", shrink=0.1, risk_aversion=1.0)
    T, B = 50, 2
    tradable = np.ones((T, B), bool)
    tgt, w = rule.run(_flat(T, B, 0.01, 0.05), tradable, 0)
    assert np.isnan(tgt).all() and (w == 0).all()
    tgt, w = rule.run(_flat(T, B, -0.01, 0.05), tradable, 0)
    assert np.isnan(tgt).all() and (w == 0).all()  # nor a short
    tgt, w = rule.run(_flat(T, B, 0.02, 0.05), tradable, 0)
    edge = (0.1 * 0.02 - 12e-4) / (1.0 * 0.05**2)  # (m - c) / (risk_aversion var): the edge of the band
    np.testing.assert_allclose(w[0], edge / B)
    assert np.isfinite(tgt[0]).all() and np.isnan(tgt[1:]).all()  # one trade, then nothing (no drift here)
    free = Rule("mv", "band", shrink=0.1, risk_aversion=1.0, costs=CostModel(0, 0))
    np.testing.assert_allclose(free.run(_flat(T, B, 0.01, 0.05), tradable, 0)[1][0], 0.1 * 0.01 / 0.05**2 / B)


def _utility(x, x0, m, var, c, kappa):
    d = np.abs(x - x0)
    return x * m - 0.5 * var * x**2 - d * (c + kappa * np.sqrt(d))


def test_band_trade_with_impact_is_the_exact_optimum():
    """The closed form maximises x m - a/2 x^2 - |dx| (c + kappa sqrt|dx|), checked on a fine grid."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        x0 = rng.uniform(-1, 1, 1)
        m, var = rng.normal(0, 0.004, 1), rng.uniform(0.0004, 0.01, 1)
        c, kappa, lo = rng.uniform(0, 0.002), rng.uniform(0, 0.01, 1), float(rng.choice([-1.0, 0.0]))
        x0 = np.maximum(x0, lo)
        x = band_trade(x0, m, var, 1.0, c, kappa, lo)
        grid = np.linspace(lo, 1, 200_001)
        u = _utility(grid, x0, m, var, c, kappa)
        assert _utility(x, x0, m, var, c, kappa)[0] >= u.max() - 1e-12
        assert abs(x[0] - grid[np.argmax(u)]) < 2e-4


def test_partial_adjustment_converges_to_the_aim():
    """Constant forecasts: the gap to the aim shrinks by (1 - rate) every bar, from a flat book."""
    T, B, rate = 400, 2, 1 / 24
    raw = _flat(T, B, 0.01, 0.05)
    raw[:, 1, 1] = -0.02  # the second asset: a short aim
    for lo in (False, True):
        rule = Rule("mv", "partial", long_only=lo, rate=rate)
        _, w = rule.run(raw, np.ones((T, B), bool), 0)
        aim = mv_aim(raw[0, :, 1], raw[0, :, 2], rule.shrink, rule.risk_aversion, rule.lo) / B
        gap = np.abs(w - aim)
        np.testing.assert_allclose(gap[1:] / np.where(gap[:-1] > 0, gap[:-1], 1), np.where(gap[:-1] > 0, 1 - rate, 0))
        np.testing.assert_allclose(w[-1], aim, atol=1e-6)
        assert (aim[1] < 0) != lo


def test_tranches_reach_a_new_aim_in_exactly_one_horizon():
    """A step change in the forecast moves the book 1/24 of the way each hour, there after 24 bars."""
    T, B = 72, 1
    raw = _flat(T, B, 0.0, 0.05)
    raw[24:, :, 1] = 0.02
    rule = Rule("mv", "tranche")
    _, w = rule.run(raw, np.ones((T, B), bool), 0)
    aim = mv_aim(np.array([0.02]), np.array([0.05**2]), rule.shrink, rule.risk_aversion, -1.0)[0]
    np.testing.assert_allclose(w[:24, 0], 0.0)
    np.testing.assert_allclose(w[24:48, 0], aim * np.arange(1, 25) / 24)
    np.testing.assert_allclose(w[47:, 0], aim)


@pytest.mark.parametrize("name", [n for n in COST_AWARE if n.endswith("_long")])
def test_long_only_rules_never_go_short(name, fp):
    preds = _noisy_preds(fp, seed=4)
    preds[..., 1] -= 0.2  # a bearish model
    raw = to_raw(preds, fp.sigma)
    tgt, w = STRATEGIES[name].fn.run(raw, np.isfinite(fp.close), 200, market_from(fp, CostModel()))
    assert np.nanmin(w) >= 0 and np.nanmin(tgt) >= 0
    assert np.nanmax(w) > 0  # it does go long sometimes
    res = run_backtest(fp.times, fp.close, tgt, 200)
    assert res.weights.min() >= 0


def test_impact_cost_equals_the_hand_computed_value():
    """One trade of 0.5 into asset 0 and 0.25 into asset 1, then a rebalance; impact on equity x capital."""
    close = np.array([[100.0, 10.0], [110.0, 10.0], [110.0, 10.0]])
    target = np.array([[0.5, 0.25], [0.5, NAN], [NAN, NAN]])
    adv = np.array([[1e8, 4e6], [1e8, 4e6], [1e8, 4e6]])
    sd = np.array([[0.04, 0.09], [0.04, 0.09], [0.04, 0.09]])
    res = run_backtest(
        np.arange(3) * HOUR, close, target, 0, fee_bps=10, slippage_bps=2, impact_k=0.7, capital=2e6, adv=adv,
        sigma_daily=sd,
    )  # fmt: skip
    c0 = 0.5 * (12e-4 + 0.7 * 0.04 * np.sqrt(0.5 * 2e6 / 1e8)) + 0.25 * (12e-4 + 0.7 * 0.09 * np.sqrt(0.25 * 2e6 / 4e6))
    assert res.cost[0] == pytest.approx(c0, rel=1e-12)
    eq1 = (1 - c0) * (1 + 0.05)  # asset 0 +10% on half the book
    drifted = 0.55 / 1.05  # asset 0's weight after the bar; back to 0.5
    dw = drifted - 0.5
    c1 = dw * (12e-4 + 0.7 * 0.04 * np.sqrt(dw * eq1 * 2e6 / 1e8))
    assert res.cost[1] == pytest.approx(c1, rel=1e-12)
    assert res.equity[2] == pytest.approx(eq1 * (1 - c1), rel=1e-12)
    flat = run_backtest(np.arange(3) * HOUR, close, target, 0, fee_bps=10, slippage_bps=2)
    np.testing.assert_allclose(flat.cost, flat.turnover * 12e-4)  # impact_k = 0: the fixed-bps model
    assert res.equity[-1] < flat.equity[-1]


def test_impact_needs_liquidity_and_skips_assets_without_it():
    close = np.ones((3, 2))
    target = np.full((3, 2), 0.3)
    adv = np.array([[1e9, NAN], [1e9, 0.0], [1e9, 1e9]])
    res = run_backtest(np.arange(3) * HOUR, close, target, 0, impact_k=1, adv=adv, sigma_daily=np.full((3, 2), 0.05))
    np.testing.assert_allclose(res.weights, [[0.3, 0.0], [0.3, 0.0]])
    with pytest.raises(ValueError, match="adv"):
        run_backtest(np.arange(3) * HOUR, close, target, 0, impact_k=1)


def test_step_panel_is_the_backtest_rule_bar_by_bar(fp):
    """The live service's call (one bar of a panel window, state carried in a Book that survives a dict
    round trip) gives the same weights as the backtest's loop over the whole panel."""
    preds = _noisy_preds(fp, seed=5)
    costs = CostModel(10, 2, impact_k=0.5)
    raw = to_raw(preds, fp.sigma)
    for name in ("mv_partial", "tranche_tanh", "mv_band"):
        rule = replace(STRATEGIES[name].fn, costs=costs)
        _, w = rule.run(raw, np.isfinite(fp.close), 200, market_from(fp, costs))
        book = rule.init(len(fp.symbols))
        for s in range(200, 400):
            got, book = rule.step_panel(book, fp, s, raw[s])
            book = Book.from_dict(book.as_dict())
            np.testing.assert_allclose(got, w[s], rtol=0, atol=1e-15, err_msg=f"{name} bar {s}")


def test_a_market_without_liquidity_prices_no_impact():
    m = Market(CostModel(impact_k=1.0))
    moved, adv, sd = m.at(0, 3)
    assert (moved == 0).all() and np.isnan(adv).all() and np.isnan(sd).all()
    assert CostModel(impact_k=1.0).per_unit(np.array([0.1]), 1.0, adv[:1], sd[:1])[0] == pytest.approx(12e-4)


def test_adv_is_the_trailing_30_day_traded_value_known_at_t(fp):
    """ADV at bar t: 24 x mean of close x volume over the 720 bars to t (gaps skipped); the future plays no part."""
    from learner.features import ADV_BARS

    qv = fp.close * fp.volume
    for t in (0, 10, 719, 720, 2000, len(fp.times) - 1):
        want = 24 * np.nanmean(qv[max(0, t - ADV_BARS + 1) : t + 1], axis=0)
        np.testing.assert_allclose(fp.adv[t], want, rtol=1e-9)
    assert np.isnan(fp.volume[~np.isfinite(fp.close)]).all()
    assert np.isfinite(fp.adv[1:]).all() and (fp.adv[1:] > 1e6).all()  # BTC and ETH: millions a day
