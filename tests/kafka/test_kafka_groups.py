"""Consumer groups on a real broker: partition split, takeover from committed offsets, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from continuum.bus import Message
from continuum.kafka_bus import KafkaBus
from continuum.lake import Lake
from continuum.schema import Trade
from tests.kafka.kafka_helpers import PARTITIONS, drain
from tests.services.kafka import KafkaBroker

pytestmark = pytest.mark.integration

TS = 1_704_067_200_000
REPO = Path(__file__).resolve().parents[2]


def publish_trades(bus: KafkaBus, tag: str, symbols: list[str], start: int, n: int) -> None:
    for i in range(start, start + n):
        for s in symbols:
            bus.publish(Trade(tag, s, str(i), TS + i, 100.0 + i, 1.0, "buy"))
    bus.flush()


class Learner:
    """A stand-in for the learner's bookkeeping: per-partition state saved on revoke, loaded on assign."""

    def __init__(self, name: str, store: dict, log: list):
        self.name, self.store, self.log = name, store, log
        self.state: dict[tuple[str, int], int] = {}  # events processed per partition
        self.loaded: list[tuple[str, int]] = []
        self.consumer = None

    def on_assign(self, parts: list[tuple[str, int]]) -> None:
        for p in parts:
            self.state[p] = self.store.get(p, 0)
            self.loaded.append(p)

    def on_revoke(self, parts: list[tuple[str, int]]) -> None:
        for p in parts:
            if p in self.state:
                self.store[p] = self.state.pop(p)  # checkpoint the state, then commit
        self.consumer.commit()  # runs before the partitions go, so the next owner starts right here

    def step(self, tag: str) -> int:
        msgs: list[Message] = [m for m in self.consumer.poll(timeout_s=0.3) if m.key.startswith(tag)]
        for m in msgs:
            self.log.append((m.key, int(m.event.trade_id), self.name, m.partition))
            self.state[(m.topic, m.partition)] = self.state.get((m.topic, m.partition), 0) + 1
        self.consumer.commit()
        return len(msgs)


def test_two_consumers_split_partitions_then_one_takes_over(bus: KafkaBus, tag: str) -> None:
    group, symbols = f"g-{tag}", [f"C{i}/USDT" for i in range(16)]
    store: dict = {}
    log: list = []
    a, b = Learner("a", store, log), Learner("b", store, log)
    a.consumer = bus.consumer(["market.trades"], group, on_assign=a.on_assign, on_revoke=a.on_revoke)
    b.consumer = bus.consumer(["market.trades"], group, on_assign=b.on_assign, on_revoke=b.on_revoke)
    try:
        deadline = time.monotonic() + 60
        while not (a.consumer.assignment() and b.consumer.assignment()):
            assert time.monotonic() < deadline, "the group never gave both members partitions"
            a.step(tag), b.step(tag)
        pa, pb = set(a.consumer.assignment()), set(b.consumer.assignment())
        assert not pa & pb and pa | pb == {("market.trades", p) for p in range(PARTITIONS)}

        publish_trades(bus, tag, symbols, 0, 40)
        deadline = time.monotonic() + 60
        while len(log) < 40 * len(symbols):
            assert time.monotonic() < deadline, f"{len(log)} of {40 * len(symbols)} processed"
            a.step(tag), b.step(tag)
        assert {n for _k, _i, n, _p in log} == {"a", "b"}, "both members processed events"

        b.consumer.close()  # leaves the group: on_revoke saves b's state and commits
        assert all(p in store for p in pb)
        publish_trades(bus, tag, symbols, 40, 40)
        deadline = time.monotonic() + 60
        while len(log) < 80 * len(symbols):
            assert time.monotonic() < deadline, f"{len(log)} of {80 * len(symbols)} processed"
            a.step(tag)
        assert set(a.consumer.assignment()) == pa | pb
        assert set(pb) <= set(a.loaded), "the new owner loads the saved state of the partitions it takes"
    finally:
        a.consumer.close()
        b.consumer.close()

    seen = [(k, i) for k, i, _n, _p in log]
    assert len(seen) == len(set(seen)), "an event was processed twice"
    for s in symbols:
        ids = [i for k, i, _n, _p in log if k == f"{tag}:{s}"]
        assert ids == list(range(80)), f"{s}: gap or reordering in {ids}"
    # the state that followed the partitions counts every event of the partition exactly once
    per_part: dict[tuple[str, int], int] = {}
    for _k, _i, _n, p in log:
        per_part[("market.trades", p)] = per_part.get(("market.trades", p), 0) + 1
    for p, n in per_part.items():
        assert (a.state[p] if p in a.state else store[p]) == n


def test_killed_consumer_rereads_from_last_commit_and_outputs_stay_unique(
    kafka_broker: KafkaBroker, bus: KafkaBus, tag: str, tmp_path: Path
) -> None:
    group, symbols = f"g-{tag}", [f"K{i}/USDT" for i in range(8)]
    total = 8 * 50
    publish_trades(bus, tag, symbols, 0, 50)
    lake_dir = tmp_path / "lake"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [kafka_broker.bootstrap, group, tag, str(lake_dir), str(total), "150"]
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("killed_consumer.py")), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("READY"), f"child consumer said {line!r}"
        processed, committed = map(int, line.split()[1:])
        assert committed < processed == total
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

    lake = Lake(lake_dir)
    assert lake.read("trade").height == total  # the killed consumer's outputs are all there

    survivor = bus.consumer(["market.trades"], group)
    try:
        again = drain(survivor, lambda m: m.key.startswith(tag), total - committed, timeout_s=60)
        assert len(again) == total - committed, "re-read exactly what was not committed"
        lake.append_events(m.event for m in again)  # the survivor re-processes: at-least-once
        survivor.commit()
    finally:
        survivor.close()
    df = lake.read("trade")
    assert df.height == total and df.select(["exchange", "symbol", "trade_id"]).n_unique() == total


def test_commit_refused_during_a_rebalance_is_resent_after_the_next_poll(bus: KafkaBus, tag: str) -> None:
    """A group that is rebalancing refuses commits (the restarted learner hit this once the SIGKILLed
    member's session expired). The broker cannot be driven into that state on cue, so the refusal is
    injected once at kafka-python's commit call; everything else is the real broker. The caller must not
    fail, and the offsets must land with the next poll."""
    from kafka.errors import RebalanceInProgressError

    group, symbols = f"g-{tag}", [f"R{i}/USDT" for i in range(8)]
    publish_trades(bus, tag, symbols, 0, 5)
    a = bus.consumer(["market.trades"], group)
    got = drain(a, lambda m: m.key.startswith(tag), 40)
    want = {(m.topic, m.partition): m.offset + 1 for m in got}
    real_commit, refused = a._c.commit, []

    def refuse_once(offsets=None, **kw):
        if not refused:
            refused.append(offsets)
            raise RebalanceInProgressError("injected: the group is rebalancing")
        return real_commit(offsets, **kw)

    a._c.commit = refuse_once
    try:
        a.commit(want)  # refused by the "rebalance": must not raise
        assert refused and all(a.committed(t, p) != o for (t, p), o in want.items())
        a.poll(timeout_s=0.3)  # the rebalance is over: the kept offsets go out now
        assert all(a.committed(t, p) == o for (t, p), o in want.items())
    finally:
        a._c.commit = real_commit
        a.close()
