"""Helpers shared by the Kafka tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from continuum.bus import Consumer, Message
from continuum.config import KafkaConfig
from tests.services.kafka import KafkaBroker

PARTITIONS = 4
REPO = Path(__file__).resolve().parents[2]


def process_env(broker: KafkaBroker, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``continuum`` process on the test broker: this checkout's code, one thread, the
    short group timeouts of :func:`make_config`, checkpoints and lake under ``tmp_path``; ``extra`` on top."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CONTINUUM_BUS__KIND": "kafka",
        "CONTINUUM_BUS__PARTITIONS": str(PARTITIONS),
        "CONTINUUM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "CONTINUUM_KAFKA__SESSION_TIMEOUT_MS": "3000",
        "CONTINUUM_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "CONTINUUM_LEARNER__CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "CONTINUUM_LAKE__ROOT": str(tmp_path / "lake"),
        **extra,
    }


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
