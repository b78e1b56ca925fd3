"""Is a backtest's Sharpe ratio real? The probabilistic and deflated Sharpe ratios and a bootstrap interval.

A Sharpe ratio measured on a few thousand noisy hours, picked as the best of several strategies, is biased
upward twice: by chance (the estimate is noisy, more so with fat tails and skew) and by selection (the best
of N tries beats zero even when none has an edge). These three numbers say how much of it survives.

References:
- Bailey, D. H. & López de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier". Journal of Risk 15(2),
  3-44: the probabilistic Sharpe ratio, PSR, with the standard error of the Sharpe estimate
  under skewed, fat-tailed returns (Mertens 2002).
- Bailey, D. H. & López de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality". Journal of Portfolio Management 40(5), 94-107: the deflated
  Sharpe ratio, DSR = PSR against the Sharpe ratio the best of N trials would show by luck.
- Politis, D. N. & Romano, J. P. (1994). "The Stationary Bootstrap". JASA 89(428), 1303-1313.

Units: every Sharpe ratio here is per bar (mean / std of hourly returns, not annualised) and ``n`` is the
number of bars, as the formulas need; :mod:`strategies.metrics` annualises what it reports. Kurtosis is
excess kurtosis (0 for a normal distribution), as pandas, quantstats and vectorbt report it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329  # Euler-Mascheroni constant, in the expected maximum of N normals
BLOCK_BARS = 168  # mean block length of the stationary bootstrap: one week of hourly bars (see sharpe_interval)
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 0
_N = NormalDist()


def sharpe_moments(x: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Per-bar Sharpe ratio (mean / sample std, ddof=1), skewness and excess kurtosis of returns ``x``.

    Skewness and kurtosis are the plain moment estimators (no small-sample correction), as in Bailey &
    López de Prado; all three are None when ``x`` has fewer than 3 values or no variance.
    """
    n = int(x.size)
    if n < 3:
        return None, None, None
    d = x - x.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 0:
        return None, None, None
    sr = float(x.mean() / math.sqrt(m2 * n / (n - 1)))
    return sr, float(np.mean(d**3) / m2**1.5), float(np.mean(d**4) / m2**2 - 3.0)


def sharpe_std_error(sr: float, n: int, skew: float, excess_kurtosis: float) -> float | None:
    """Standard error of a per-bar Sharpe estimate ``sr`` from ``n`` iid returns with the given shape.

    sqrt((1 - skew sr + (kurtosis - 1) / 4 sr^2) / (n - 1)), kurtosis = excess + 3 (Mertens 2002): a fat
    left tail (negative skew, high kurtosis) widens it. None if undefined (n < 2 or a non-positive radicand).
    """
    v = 1.0 - skew * sr + (excess_kurtosis + 2.0) / 4.0 * sr**2
    if n < 2 or v <= 0:
        return None
    return math.sqrt(v / (n - 1))


def probabilistic_sharpe_ratio(
    sr: float, n: int, skew: float, excess_kurtosis: float, benchmark: float = 0.0
) -> float | None:
    """PSR: the probability that the true per-bar Sharpe ratio exceeds ``benchmark``, given the estimate.

    PSR = Phi((sr - benchmark) / se(sr)) with :func:`sharpe_std_error` (Bailey & López de Prado 2012).
    """
    se = sharpe_std_error(sr, n, skew, excess_kurtosis)
    if se is None or se == 0:
        return None
    return _N.cdf((sr - benchmark) / se)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """The per-bar Sharpe ratio the best of ``n_trials`` skill-less trials is expected to show by luck.

    sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), V the variance of the trials' Sharpe
    ratios, gamma Euler's constant (Bailey & López de Prado 2014: their approximation of the expected
    maximum of N normal draws). Zero for a single trial: nothing was selected.
    """
    if n_trials <= 1 or variance <= 0:
        return 0.0
    z = (1.0 - EULER_GAMMA) * _N.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * _N.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(variance) * z


def deflated_sharpe_ratio(
    sr: float, n: int, skew: float, excess_kurtosis: float, n_trials: int, trials_variance: float
) -> float | None:
    """DSR: PSR against :func:`expected_max_sharpe` of all ``n_trials`` tried (Bailey & López de Prado 2014).

    The probability that the strategy's true Sharpe ratio beats what the luckiest of the trials would have
    shown with no skill at all. It falls as more trials are counted: count every variant that was tried.
    """
    return probabilistic_sharpe_ratio(sr, n, skew, excess_kurtosis, expected_max_sharpe(n_trials, trials_variance))


def bootstrap_sharpes(
    x: np.ndarray, mean_block: int = BLOCK_BARS, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """Per-bar Sharpe ratios of ``reps`` stationary-bootstrap resamples of ``x`` (Politis & Romano 1994).

    Each resample has ``len(x)`` bars glued from blocks that start at uniform random bars and run for a
    geometric number of bars (mean ``mean_block``), wrapping around the end. Blocks keep the dependence
    within a week (volatility clustering) that resampling single hours would destroy. Only each block's
    sums of x and x^2 are needed, read off cumulative sums, so a resample costs O(len(x) / mean_block).
    """
    n = int(x.size)
    rng = np.random.default_rng(seed)
    p = 1.0 / max(1, min(mean_block, n))
    xx = np.concatenate([x, x])  # a block that runs past the end wraps around
    c1 = np.concatenate([[0.0], np.cumsum(xx)])
    c2 = np.concatenate([[0.0], np.cumsum(xx**2)])
    k = int(n * p * 1.5 + 10 * math.sqrt(n * p) + 10)  # blocks per resample: enough to cover n almost surely
    lens = np.minimum(rng.geometric(p, (reps, k)), n)
    while (short := lens.sum(1) < n).any():  # rare: draw more blocks for the resamples still short of n
        lens = np.concatenate([lens, np.where(short[:, None], np.minimum(rng.geometric(p, (reps, k)), n), 0)], 1)
    starts = rng.integers(0, n, lens.shape)
    before = np.cumsum(lens, axis=1) - lens
    lens = np.clip(n - before, 0, lens)  # cut the last block at n bars
    s1 = (c1[starts + lens] - c1[starts]).sum(1)
    s2 = (c2[starts + lens] - c2[starts]).sum(1)
    var = (s2 - s1**2 / n) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (s1 / n) / np.sqrt(var), np.nan)


def sharpe_interval(
    x: np.ndarray,
    level: float = 0.95,
    mean_block: int = BLOCK_BARS,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """Percentile interval of the per-bar Sharpe ratio of ``x`` from :func:`bootstrap_sharpes` (seeded).

    A week-long mean block (168 hourly bars) is long enough for the day-to-day persistence of crypto
    volatility and short enough that a 30-day stretch still holds a few blocks. None below 3 bars.
    """
    if x.size < 3:
        return None
    sr = bootstrap_sharpes(x, mean_block, reps, seed)
    sr = sr[np.isfinite(sr)]
    if sr.size == 0:
        return None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(sr, [a, 1.0 - a])
    return float(lo), float(hi)
