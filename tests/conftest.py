"""Session-wide services shared by several test packages.

``kafka_broker``: one real single-node Kafka 4 broker (Apache jars from Maven Central, KRaft) for the
whole session, started on first use by any test that asks for it (tests/kafka, tests/learner).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from tests.services.kafka import KafkaBroker, cache_dir

# two threads on two busy cores crawl (STACK_NOTES): every test, and every process a test starts, uses one
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    cold = not (cache_dir() / "lib" / ".complete").is_file()
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        seconds = broker.start()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        how = "cold: jars downloaded" if cold else "jars cached"
        line = f"kafka broker {broker.bootstrap} answered after {seconds:.1f}s ({how})"
        if reporter is not None:
            reporter.write_line(line)
        yield broker
    finally:
        broker.stop()
