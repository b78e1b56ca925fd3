"""Fixtures for the chain tests: the golden mainnet export and a real anvil node with deployed contracts.

anvil is started per test that needs a clean chain (it is up in well under a second); a failure to provision
or start it raises, so the integration tests fail rather than skip on a broken setup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.services.anvil import Anvil, Scenario, start_anvil  # noqa: E402

# vendored in the repository (MIT, see tests/data/SOURCES.md): the tests need nothing beside the clone
GOLDEN = REPO / "tests" / "data" / "ethereum_etl_mainnet_samples" / "blocks_17173049_17173050"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        raise FileNotFoundError(f"golden ethereum-etl export missing at {GOLDEN}")
    return GOLDEN


@pytest.fixture
def node() -> Iterator[Anvil]:
    # usually up in well under a second; the deadline is for a loaded machine, it never adds a wait
    a = start_anvil(timeout_s=60.0)
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def scenario(node: Anvil) -> Scenario:
    """Contracts deployed and one round of ETH transfers, token transfers and swaps in both pools."""
    s = Scenario(node.url).deploy()
    s.activity(2)
    return s
