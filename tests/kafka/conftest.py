"""A real single-node Kafka 4 broker for the whole session (tests/services/kafka.py), and bus helpers.

The broker is started once per session; the tests tag their events with a fresh ``exchange``/``chain``
name so they never read each other's data, and each test uses its own consumer group.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from continuum.config import KafkaConfig
from continuum.kafka_bus import KafkaBus
from tests.kafka.kafka_helpers import PARTITIONS, make_config
from tests.services.kafka import KafkaBroker, cache_dir


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


@pytest.fixture
def kafka_cfg(kafka_broker: KafkaBroker) -> KafkaConfig:
    return make_config(kafka_broker)


@pytest.fixture
def bus(kafka_cfg: KafkaConfig) -> Iterator[KafkaBus]:
    b = KafkaBus(kafka_cfg, partitions=PARTITIONS)
    yield b
    b.close()


@pytest.fixture
def tag() -> str:
    """A fresh exchange/chain name: every key of this test's events contains it."""
    return "t" + uuid.uuid4().hex[:10]
