"""Forensics vocabulary: risk categories, where traces stop, alert rules, severities and thresholds.

Plain constants with no heavy import, so the command line can list them in ``--help`` without loading
polars; :mod:`forensics.queries` applies them.
"""

from __future__ import annotations

# Categories whose presence on a path an analyst must see (GraphSense/Chainalysis "risk" categories).
RISK_CATEGORIES = ("sanctioned", "mixer", "exploit", "phishing")
# Where a trace stops expanding by default: services whose onward flows are other customers' funds.
DEFAULT_STOP_CATEGORIES = ("exchange", "dex", "bridge", "mixer")
# Default "large transfer" thresholds in token units (roughly USD 250k+ at 2023-24 prices); override per symbol.
DEFAULT_LARGE: dict[str, float] = {
    "ETH": 100.0,
    "WETH": 100.0,
    "stETH": 100.0,
    "WBTC": 5.0,
    "USDC": 250_000.0,
    "USDT": 250_000.0,
    "DAI": 250_000.0,
}

ALERT_RULES = ("sanctioned", "mixer_deposit", "mixer_withdrawal", "exploit", "phishing", "large", "watch")
SEVERITY = {
    "sanctioned": "high",
    "exploit": "high",
    "mixer_deposit": "medium",
    "mixer_withdrawal": "medium",
    "phishing": "medium",
    "large": "low",
    "watch": "low",
}
