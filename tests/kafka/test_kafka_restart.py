"""The broker is killed and restarted mid-stream: the producer retries and nothing acknowledged is lost."""

from __future__ import annotations

import threading

import pytest

from continuum.kafka_bus import KafkaBus
from continuum.schema import Trade
from tests.kafka.kafka_helpers import drain
from tests.services.kafka import KafkaBroker

pytestmark = pytest.mark.integration

TS = 1_704_067_200_000


def test_broker_restart_mid_stream_loses_nothing_acknowledged(
    kafka_broker: KafkaBroker, bus: KafkaBus, tag: str
) -> None:
    symbols = [f"R{i}/USDT" for i in range(8)]
    per_round = 250

    def publish(start: int) -> None:
        for i in range(start, start + per_round):
            for s in symbols:
                bus.publish(Trade(tag, s, str(i), TS + i, 50.0, 2.0, "sell"))

    publish(0)
    bus.flush()  # acknowledged before the broker goes down

    kafka_broker.stop(kill=True)  # SIGKILL: no controlled shutdown
    publish(per_round)  # buffered while the broker is down; the producer keeps retrying
    restart = threading.Thread(target=kafka_broker.start)
    restart.start()
    publish(2 * per_round)
    restart.join()
    assert kafka_broker.proc is not None and kafka_broker.proc.poll() is None
    bus.flush()  # raises if anything was not delivered after the retries

    total = 3 * per_round * len(symbols)
    c = bus.consumer(["market.trades"], group=f"g-{tag}")
    try:
        got = drain(c, lambda m: m.key.startswith(tag), total, timeout_s=90)
    finally:
        c.close()
    ids = [(m.key, int(m.event.trade_id)) for m in got]
    assert len(ids) == len(set(ids)) == total, "lost or duplicated events (idempotent producer)"
    for s in symbols:
        assert [i for k, i in ids if k == f"{tag}:{s}"] == list(range(3 * per_round)), f"{s} out of order"
