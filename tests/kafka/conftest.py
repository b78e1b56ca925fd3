"""Bus helpers over the session's real Kafka broker (the ``kafka_broker`` fixture lives in tests/conftest.py).

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
from tests.services.kafka import KafkaBroker


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
