"""PSR, DSR and the bootstrap interval: hand-computed values, the properties the papers state, simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strategies.overfitting import (
    bootstrap_sharpes,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_interval,
    sharpe_moments,
)


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_psr_of_a_small_series_by_hand():
    x = [0.012, -0.004, 0.007, -0.021, 0.015, 0.003, -0.002, 0.009, 0.030, -0.011]
    n = len(x)
    mean = sum(x) / n
    d = [v - mean for v in x]
    m2, m3, m4 = (sum(v**k for v in d) / n for k in (2, 3, 4))
    sr = mean / math.sqrt(sum(v * v for v in d) / (n - 1))  # sample std, as the reported Sharpe
    skew, kurt = m3 / m2**1.5, m4 / m2**2  # plain moments; kurt is 3 for a normal
    psr = phi(sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    got_sr, got_skew, got_exkurt = sharpe_moments(np.array(x))
    assert (got_sr, got_skew, got_exkurt) == pytest.approx((sr, skew, kurt - 3))
    assert probabilistic_sharpe_ratio(got_sr, n, got_skew, got_exkurt) == pytest.approx(psr, rel=1e-12)
    assert 0.5 < psr < 0.99  # a positive mean on ten bars: likely, far from sure
    # against a benchmark above the estimate the probability is below one half
    assert probabilistic_sharpe_ratio(got_sr, n, got_skew, got_exkurt, benchmark=2 * sr) < 0.5


def test_psr_under_normal_returns_and_the_cost_of_fat_left_tails():
    # normal returns: se = sqrt((1 + sr^2 / 2) / (n - 1)), so sr = 0.1 on 101 bars is Phi(1 / sqrt(1.005))
    assert probabilistic_sharpe_ratio(0.1, 101, 0.0, 0.0) == pytest.approx(0.8407413278013518, rel=1e-12)
    assert probabilistic_sharpe_ratio(0.1, 101, 0.0, 0.0) == pytest.approx(phi(1 / math.sqrt(1.005)), rel=1e-12)
    assert probabilistic_sharpe_ratio(0.0, 500, -1.0, 10.0) == pytest.approx(0.5)
    normal = probabilistic_sharpe_ratio(0.05, 2000, 0.0, 0.0)
    crashy = probabilistic_sharpe_ratio(0.05, 2000, -2.0, 20.0)  # same Sharpe, skewed left with fat tails
    assert crashy < normal
    assert probabilistic_sharpe_ratio(0.05, 8000, 0.0, 0.0) > normal  # more bars, more certainty


def test_expected_max_sharpe_matches_the_mean_maximum_of_normal_draws():
    """The paper's closed form against Monte Carlo: E[max of N draws from N(0, V)] within 3%."""
    rng = np.random.default_rng(0)
    v = 0.04
    assert expected_max_sharpe(1, v) == 0.0
    g = 0.5772156649015329
    assert expected_max_sharpe(10, 1.0) == pytest.approx((1 - g) * 1.2815515655446004 + g * 1.7894, abs=1e-3)
    for n in (10, 100, 1000):
        mc = (math.sqrt(v) * rng.standard_normal((4000, n))).max(axis=1).mean()
        assert expected_max_sharpe(n, v) == pytest.approx(mc, rel=0.03), n


def test_dsr_falls_as_more_trials_are_counted():
    sr, n, skew, exk, var = 0.03, 8760, -0.3, 6.0, 2e-4
    psr = probabilistic_sharpe_ratio(sr, n, skew, exk)
    dsrs = [deflated_sharpe_ratio(sr, n, skew, exk, k, var) for k in (1, 2, 5, 20, 100, 1000)]
    assert dsrs[0] == pytest.approx(psr)  # one trial: nothing selected, DSR is PSR
    assert all(a > b for a, b in zip(dsrs, dsrs[1:], strict=False)), dsrs
    assert dsrs[-1] < 0.5 < psr
    # more dispersion among the trials, a higher bar to clear
    assert deflated_sharpe_ratio(sr, n, skew, exk, 20, 4 * var) < dsrs[3]


def test_the_best_of_many_noise_strategies_passes_psr_but_not_dsr():
    """Twenty skill-less strategies, keep the best: PSR calls it significant most of the time, DSR rarely."""
    rng = np.random.default_rng(7)
    n, trials, repeats = 2000, 20, 300
    psr_pass = dsr_pass = 0
    for _ in range(repeats):
        x = rng.standard_normal((trials, n)) * 0.01
        stats = [sharpe_moments(row) for row in x]
        srs = np.array([s[0] for s in stats])
        best = int(np.argmax(srs))
        sr, skew, exk = stats[best]
        psr_pass += probabilistic_sharpe_ratio(sr, n, skew, exk) > 0.95
        dsr_pass += deflated_sharpe_ratio(sr, n, skew, exk, trials, float(np.var(srs, ddof=1))) > 0.95
    assert psr_pass / repeats > 0.5  # 1 - 0.95^20 = 64% expected
    assert dsr_pass / repeats < 0.15


def _coverage(simulate, true_sr: float, seeds: int, mean_block: int, reps: int = 1000) -> float:
    hits = 0
    for seed in range(seeds):
        x = simulate(np.random.default_rng(seed))
        lo, hi = sharpe_interval(x, mean_block=mean_block, reps=reps, seed=seed)
        hits += lo <= true_sr <= hi
    return hits / seeds


def test_bootstrap_interval_covers_the_true_sharpe():
    """A year of hourly returns with a known Sharpe: the 95% interval holds it in most seeds, iid and with
    GARCH(1,1) volatility clustering."""
    n, mu, sd = 8760, 2e-4, 0.01

    def iid(rng):
        return mu + sd * rng.standard_normal(n)

    omega, alpha, beta = 0.05, 0.10, 0.85  # unconditional variance omega / (1 - alpha - beta) = 1

    def garch(rng):
        z = rng.standard_normal(n + 500)
        h = np.empty_like(z)
        e = np.empty_like(z)
        h[0] = 1.0
        for t in range(len(z)):
            if t:
                h[t] = omega + alpha * e[t - 1] ** 2 + beta * h[t - 1]
            e[t] = math.sqrt(h[t]) * z[t]
        return mu + sd * e[500:]

    true_sr = mu / sd
    assert _coverage(iid, true_sr, 60, 168) >= 0.85  # 0.90 measured (nominal 0.95)
    assert _coverage(garch, true_sr, 60, 168) >= 0.85  # 0.97 measured


def test_blocks_matter_when_returns_are_autocorrelated():
    """AR(1) returns (phi 0.7): resampling single hours forgets the dependence and the interval is too narrow
    (it misses the true Sharpe far more often than 5%); week-long blocks keep it."""
    n, mu, sd_e, ph = 8760, 2e-4, 0.01, 0.7

    def ar1(rng):
        e = sd_e * rng.standard_normal(n + 200)
        x = np.empty_like(e)
        x[0] = e[0]
        for t in range(1, len(e)):
            x[t] = ph * x[t - 1] + e[t]
        return mu + x[200:]

    true_sr = mu / (sd_e / math.sqrt(1 - ph**2))
    blocks = _coverage(ar1, true_sr, 40, 168, reps=300)
    single = _coverage(ar1, true_sr, 40, 1, reps=300)
    assert blocks >= 0.85 and single < 0.75  # measured 0.90 and 0.575


def test_bootstrap_is_seeded_and_scales_with_length():
    rng = np.random.default_rng(3)
    x = 1e-4 + 0.01 * rng.standard_normal(8760)
    assert sharpe_interval(x) == sharpe_interval(x)  # default seed: the same interval every run
    assert sharpe_interval(x, seed=1) != sharpe_interval(x)
    sr = bootstrap_sharpes(x, reps=500)
    assert sr.shape == (500,) and np.isfinite(sr).all()
    assert np.mean(sr) == pytest.approx(sharpe_moments(x)[0], abs=0.004)  # centred on the estimate
    lo4, hi4 = sharpe_interval(x[:2190])
    lo, hi = sharpe_interval(x)
    assert (hi4 - lo4) / (hi - lo) == pytest.approx(2.0, rel=0.25)  # a quarter of the bars, twice as wide
    assert sharpe_interval(np.array([0.01, 0.02])) is None
