"""``continuum alerts --follow`` on the real Kafka broker: a consumer group on ``signals`` and
``chain.transfers``; alerts go to the webhook and to the ``alerts`` topic; a restarted member of the group
posts nothing twice, although the producer repeated itself.

The broker is the session's (tests/conftest.py); this test's events carry a fresh exchange and chain name,
and only alerts about them are counted (the topics also hold other tests' events).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from pathlib import Path

import pytest

from alerts.engine import Alerter, follow_bus
from continuum.kafka_bus import KafkaBus
from continuum.schema import Alert
from forensics.etl_import import read_export
from tests.alerts.conftest import make_config, story, story_keys
from tests.kafka.kafka_helpers import PARTITIONS, drain
from tests.kafka.kafka_helpers import make_config as kafka_config

ETL = Path(__file__).resolve().parents[1] / "data" / "ethereum_etl_mainnet_samples"
BIG_USDT = "0xf4569831163aa97bb407e69b68ae8e3174af435e42f8286d25a79fe85700a113"

pytestmark = pytest.mark.integration


def test_follow_the_bus_and_restart(kafka_broker, tmp_path, receiver):
    tag = "t" + uuid.uuid4().hex[:10]
    group = f"alerts-{tag}"
    signals = story(exchange=tag)
    keys = story_keys(exchange=tag)
    transfers = [dataclasses.replace(t, chain=tag) for t in read_export(ETL) if t.tx_hash == BIG_USDT]
    cfg = make_config(tmp_path, receiver.url(), rules="signal,regime_switch,vol_spike,large")
    bus = KafkaBus(kafka_config(kafka_broker), partitions=PARTITIONS)
    try:
        bus.publish_many([*signals[:32], *transfers])
        bus.flush()
        lags: list[dict] = []  # what --metrics-port's consumer lag reads after every poll
        with Alerter(cfg, bus=bus) as a:
            follow_bus(a, bus, group=group, idle_exit_s=3, on_poll=lambda c: lags.append(c.lag()))
        assert any(lags) and {t for t, _ in lags[-1]} <= {"signals", "chain.transfers"} and not any(lags[-1].values())
        bus.publish_many(signals[25:])  # the producer repeats bars 25-31 (at-least-once), then goes on
        bus.flush()
        with Alerter(cfg, bus=bus) as b:
            follow_bus(b, bus, group=group, idle_exit_s=3)
        ours = Counter(k for k in receiver.keys_seen() if tag in k)
        large = f"large:{tag}:{BIG_USDT}:139"
        assert ours == dict.fromkeys([*keys, large], 1)

        # every alert also went to the alerts topic, keyed by its key
        consumer = bus.consumer([Alert.TOPIC], group=f"reader-{tag}")
        on_topic = drain(consumer, lambda m: tag in m.event.key, n=4)
        consumer.close()
        assert sorted(m.event.key for m in on_topic) == sorted([*keys, large])
    finally:
        bus.close()
