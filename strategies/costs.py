"""What a trade costs: fees, spread/slippage, and square-root market impact sized by the bar's liquidity.

The cost of trading notional ``q`` (quote currency) in one asset at bar t, as a fraction of ``q``::

    rate + k * sigma_daily * sqrt(q / ADV)

- ``rate = (fee_bps + slippage_bps) / 1e4``: exchange fee plus half the spread and slippage, linear in q;
- the square-root law of market impact (Almgren, Thum, Hauptmann & Li 2005; Tóth et al. 2011; Bouchaud,
  Bonart, Donier & Gould, *Trades, Quotes and Prices* 2018 ch. 12): a metaorder of size q moves the price
  by about ``k * sigma_daily * sqrt(q / ADV)``, k of order 0.5-1 in equities and crypto alike. ``ADV`` is
  the average daily traded value over the 30 days to t and ``sigma_daily`` the asset's daily volatility,
  both known at t (``learner.features``: ``FeaturePanel.adv``, ``sigma * sqrt(24)``).

So a trade of ``dw`` (fraction of equity E) costs ``|dw| * (rate + k * sigma_daily * sqrt(|dw| * E / ADV))`` of
equity. Impact makes size matter: the book is a notional ``capital`` (quote currency) that grows with the
strategy's equity; with ``impact_k = 0`` the model is the fixed-bps one and capital does not matter.
The backtest (``strategies.backtest.run_backtest``) charges exactly this; the cost-aware rules
(``strategies.portfolio``) weigh the same numbers against a trade's expected gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """Trading costs as parameters; every rule and the backtest read them from here."""

    fee_bps: float = 10.0  # exchange fee per unit of traded notional
    slippage_bps: float = 2.0  # half spread + slippage per unit of traded notional
    impact_k: float = 0.0  # square-root impact coefficient (0: fixed-bps costs only)
    capital: float = 1_000_000.0  # notional of the book at the start, quote currency (sizes the impact)

    @property
    def rate(self) -> float:
        """Linear cost per unit of traded notional (fraction)."""
        return (self.fee_bps + self.slippage_bps) / 1e4

    def per_unit(self, dw: np.ndarray, equity: float, adv: np.ndarray, sigma_daily: np.ndarray) -> np.ndarray:
        """Cost per unit of notional (fraction) of trading ``|dw|`` of equity; equity is in units of ``capital``.

        Where the impact term is unknown (no liquidity seen yet) it is left out; :func:`liquid` tells a
        caller where that is.
        """
        if self.impact_k == 0:
            return np.full(np.shape(dw), self.rate)
        with np.errstate(invalid="ignore", divide="ignore"):
            imp = self.impact_k * sigma_daily * np.sqrt(np.abs(dw) * equity * self.capital / adv)
        return self.rate + np.where(np.isfinite(imp), imp, 0.0)

    def cost(self, dw: np.ndarray, equity: float, adv: np.ndarray, sigma_daily: np.ndarray) -> float:
        """Fraction of equity paid to trade the weights ``dw`` (B,) at once."""
        dw = np.abs(dw)
        return float(np.sum(dw * self.per_unit(dw, equity, adv, sigma_daily)))


def liquid(adv: np.ndarray) -> np.ndarray:
    """Where a trade's impact can be priced: a positive, finite average daily traded value."""
    return np.isfinite(adv) & (adv > 0)
