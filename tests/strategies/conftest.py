"""A small real slice (two assets, four months of 2019 from the bundled Binance history), built once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.config import BUNDLED_DATA
from ingest.replay import load_panel
from learner.features import FeaturePanel, build_features


@pytest.fixture(scope="package")
def fp() -> FeaturePanel:
    panel = load_panel(
        BUNDLED_DATA,
        symbols=["BTC/USDT", "ETH/USDT"],
        start=datetime(2019, 1, 1, tzinfo=UTC),
        end=datetime(2019, 5, 1, tzinfo=UTC),
    )
    return build_features(panel)
