"""Helpers shared by the Kafka tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from continuum.bus import Consumer, Message
from continuum.config import KafkaConfig
from tests.services.kafka import KafkaBroker

PARTITIONS = 4


def make_config(broker: KafkaBroker, **kw: object) -> KafkaConfig:
    """Short group timeouts so rebalances and dead-member detection take seconds, not tens of seconds."""
    base = {
        "bootstrap_servers": broker.bootstrap,
        "client_id": "continuum-test",
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 500,
        "linger_ms": 5,
    }
    base.update(kw)
    return KafkaConfig(**base)


def drain(consumer: Consumer, want: Callable[[Message], bool], n: int, timeout_s: float = 30.0) -> list[Message]:
    """Poll until ``n`` wanted messages arrived (others are skipped); fail with what came if too slow."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(got)} of {n} messages arrived in {timeout_s}s")
        got.extend(m for m in consumer.poll(timeout_s=0.5) if want(m))
    return got
