"""KafkaBus against a real broker: round trip, per-key order, dead letters, delivery errors, SASL."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from continuum.bus import partition_for
from continuum.errors import UserError
from continuum.kafka_bus import KafkaBus, KafkaDeliveryError, client_options
from continuum.schema import TOPICS, Block, Candle, Retraction, Signal, Swap, Trade, Transfer, encode
from tests.kafka.kafka_helpers import PARTITIONS, drain, make_config
from tests.services.kafka import SASL_PASSWORD, SASL_USER, KafkaBroker

pytestmark = pytest.mark.integration

TS = 1_704_067_200_000  # 2024-01-01T00:00Z
H = "0x" + "ab" * 32
A1, A2, A3 = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20


def one_of_each(tag: str) -> list:
    return [
        Candle(tag, "BTC/USDT", "1h", TS, 42000.0, 42500.5, 41800.0, 42300.25, 123.5),
        Trade(tag, "ETH/USDT", "987654", TS + 1, 2300.5, 0.25, "buy"),
        Block(tag, 19_000_000, H, "0x" + "cd" * 32, TS, 150, 12_000_000, 21.5),
        Transfer(tag, 19_000_000, H, TS, "0x" + "ef" * 32, 3, A3, "USDC", A1, A2, 1500.0, "1500000000"),
        Swap(tag, 19_000_000, H, TS, "0x" + "12" * 32, 4, "uniswap_v2", A3, A1, A2, A1, A2, 1.5, 3400.0),
        Signal("hope", tag, "BTC/USDT", TS, 0.001, 0.01, 0.03, 0.004, 0.02, "calm", {"level0": 0.5}),
        Retraction(tag, 19_000_000, H, TS),
    ]


def trade(tag: str, symbol: str, i: int, price: float = 100.0) -> Trade:
    return Trade(tag, symbol, str(i), TS + i, price, 1.0, "sell")


def test_round_trip_every_event_type(bus: KafkaBus, tag: str) -> None:
    events = one_of_each(tag)
    for e in events:
        bus.publish(e)
    bus.flush()
    c = bus.consumer([t for t in TOPICS if t != "deadletter"], group=f"g-{tag}")
    try:
        got = drain(c, lambda m: tag in m.key, len(events))
    finally:
        c.close()
    assert sorted(map(encode, (m.event for m in got))) == sorted(map(encode, events))
    for m in got:
        assert m.event in events
        assert m.topic == m.event.TOPIC
        assert m.key == m.event.partition_key()
        assert m.partition == partition_for(m.key, PARTITIONS)


def test_per_key_order_across_partitions(bus: KafkaBus, tag: str) -> None:
    symbols = [f"C{i}/USDT" for i in range(12)]
    n = 150
    for i in range(n):
        for s in symbols:
            bus.publish(trade(tag, s, i))
    bus.flush()
    c = bus.consumer(["market.trades"], group=f"g-{tag}")
    try:
        got = drain(c, lambda m: m.key.startswith(tag), n * len(symbols))
    finally:
        c.close()
    by_key: dict[str, list[int]] = {}
    parts: dict[str, set[int]] = {}
    for m in got:
        by_key.setdefault(m.key, []).append(int(m.event.trade_id))
        parts.setdefault(m.key, set()).add(m.partition)
    assert all(ids == list(range(n)) for ids in by_key.values()), "a key's events came out of order"
    assert all(p == {partition_for(k, PARTITIONS)} for k, p in parts.items())
    assert len({p for ps in parts.values() for p in ps}) > 1, "the keys should spread over partitions"


def _read_deadletters(bootstrap: str, marker: str) -> list[dict]:
    """Read the whole deadletter topic with a plain kafka-python consumer (dead letters are not events)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition("deadletter", p) for p in c.partitions_for_topic("deadletter")]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out = []
        while any(c.position(tp) < end[tp] for tp in tps):
            for records in c.poll(timeout_ms=1000).values():
                out.extend(json.loads(r.value) for r in records)
        return [d for d in out if marker in d["raw"]]
    finally:
        c.close()


def test_malformed_messages_go_to_deadletter_and_the_stream_goes_on(bus: KafkaBus, tag: str) -> None:
    key = f"{tag}:BTC/USDT"
    good = encode(trade(tag, "BTC/USDT", 1)).decode()
    bad = {
        "json": (good[:-5] + "}}}").encode(),
        "v": good.replace('"v":1', '"v":99').encode(),
        "price": good.replace('"price":100.0', '"price":-5.0').encode(),
    }
    bus.publish(trade(tag, "BTC/USDT", 0))
    for raw in bad.values():
        bus.publish_raw("market.trades", key, raw)
    bus.publish(trade(tag, "BTC/USDT", 1))
    bus.flush()

    c = bus.consumer(["market.trades"], group=f"g-{tag}")
    try:
        got = drain(c, lambda m: m.key == key, 2)
        assert [m.event.trade_id for m in got] == ["0", "1"]
        assert c.deadletters >= 3
        c.commit()
        p = partition_for(key, PARTITIONS)
        assert c.committed("market.trades", p) == got[-1].offset + 1
    finally:
        c.close()

    letters = _read_deadletters(bus.cfg.bootstrap_servers, tag)
    assert len(letters) == 3
    assert {d["raw"].encode("latin-1") for d in letters} == set(bad.values())
    for d in letters:
        assert d["source_topic"] == "market.trades" and d["partition"] == partition_for(key, PARTITIONS)
        field = next(f for f, raw in bad.items() if raw == d["raw"].encode("latin-1"))
        assert field in d["reason"], d["reason"]
    offsets = sorted(d["offset"] for d in letters)
    assert offsets == [got[0].offset + 1, got[0].offset + 2, got[0].offset + 3]


def test_delivery_error_surfaces_on_flush(kafka_broker: KafkaBroker, bus: KafkaBus) -> None:
    """A record the broker refuses (too large for the topic) raises on flush; it does not vanish."""
    topic = "test.small-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    bus.publish_raw(topic, "k", b"x" * 10_000)
    with pytest.raises(KafkaDeliveryError, match="not delivered"):
        bus.flush()
    bus.publish_raw(topic, "k", b"small")
    bus.flush()  # the error was reported once; the bus goes on


def test_sasl_passthrough_and_no_secret_in_logs(
    kafka_broker: KafkaBroker, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = make_config(
        kafka_broker,
        bootstrap_servers=kafka_broker.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=SASL_USER,
        sasl_password=SASL_PASSWORD,
    )
    password = client_options(cfg)["sasl_plain_password"]
    assert password == SASL_PASSWORD and SASL_PASSWORD not in f"{password} {password!r}"
    bus = KafkaBus(cfg, partitions=PARTITIONS)
    try:
        bus.publish(trade(tag, "SOL/USDT", 7))
        bus.flush()
        c = bus.consumer(["market.trades"], group=f"g-{tag}")
        try:
            (m,) = drain(c, lambda m: m.key.startswith(tag), 1)
        finally:
            c.close()
        assert m.event == trade(tag, "SOL/USDT", 7)
        assert SASL_PASSWORD not in repr(bus)
    finally:
        bus.close()
    assert SASL_PASSWORD not in caplog.text

    wrong = make_config(
        kafka_broker,
        bootstrap_servers=kafka_broker.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=SASL_USER,
        sasl_password="not-the-password",
    )
    with pytest.raises(UserError, match="login failed"):
        KafkaBus(wrong, partitions=PARTITIONS, connect_timeout_s=5)
