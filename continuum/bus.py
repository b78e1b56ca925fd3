"""The one bus interface, and its embedded (in-process) implementation.

Everything that moves events (sources, the learner service, the signal writer) talks to a
:class:`Bus`. Two implementations exist: :class:`EmbeddedBus` here (one process, no broker: the
default for ``continuum demo`` and tests of the pipeline) and ``continuum.kafka_bus.KafkaBus``
(Apache Kafka); ``continuum.bus_factory.make_bus`` picks one from the configuration. Nothing else knows
which one runs, and this module imports neither of the others.

Semantics both implementations keep:
- a topic is split into partitions; an event's ``partition_key()`` picks the partition, so order holds
  per asset / address;
- consumers belong to a group; a group's committed offset per partition is where a restarted consumer
  resumes; offsets are committed explicitly, by the caller, only after its derived state is durable;
- a message that does not decode goes to ``deadletter`` with the reason and the original bytes, the
  consumer's ``deadletters`` counter goes up, and the stream goes on.
"""

from __future__ import annotations

import json
import threading
import zlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from continuum.schema import DEADLETTER, Event, SchemaError, decode, encode


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: str
    event: Event


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and languages-independent (crc32), unlike Python's hash()."""
    return zlib.crc32(key.encode()) % partitions


def deadletter_record(topic: str, partition: int, offset: int, raw: bytes, reason: str) -> bytes:
    """The body written to ``deadletter``: where the message came from, why, and its exact bytes."""
    return json.dumps(
        {
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "raw": raw.decode("latin-1"),
        },
        separators=(",", ":"),
    ).encode()


def decode_message(raw: bytes) -> tuple[Event | None, str | None]:
    """(event, None) or (None, reason): the single place where bus payloads are decoded."""
    try:
        return decode(raw), None
    except SchemaError as e:
        return None, str(e)


OnRevoke = Callable[[list[tuple[str, int]]], None]
OnAssign = Callable[[list[tuple[str, int]]], None]


class Consumer(ABC):
    deadletters: int = 0

    @abstractmethod
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Next decoded messages (malformed ones were dead-lettered and skipped)."""

    @abstractmethod
    def commit(self, offsets: dict[tuple[str, int], int] | None = None) -> None:
        """Commit ``{(topic, partition): next_offset}`` (default: everything returned by poll)."""

    @abstractmethod
    def close(self) -> None: ...

    def assignment(self) -> list[tuple[str, int]]:
        return []

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, as far as this consumer knows
        (``{(topic, partition): n}``; a partition whose end is not known yet is left out)."""
        return {}

    @abstractmethod
    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Make the next poll of each given (assigned) partition start at ``offset``.

        A consumer that keeps its own checkpoint (the learner service) calls it from ``on_assign`` to
        resume exactly where its restored state stops, whatever the group last committed.
        """

    def __iter__(self) -> Iterator[Message]:
        """Drains what is there now; stops when a poll returns nothing (embedded/batch use)."""
        while True:
            batch = self.poll(timeout_s=0.5)
            if not batch:
                return
            yield from batch


class Bus(ABC):
    """Publish events; open consumers. ``partitions`` is the partition count of every topic."""

    partitions: int = 1

    @abstractmethod
    def publish(self, event: Event, topic: str | None = None) -> None:
        """Publish one event to its topic (by kind unless given), keyed by its partition key."""

    @abstractmethod
    def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        """Publish bytes as they are (dead letters; tests of malformed input)."""

    @abstractmethod
    def flush(self) -> None:
        """Block until everything published is acknowledged; raise if any delivery failed."""

    @abstractmethod
    def consumer(
        self,
        topics: Iterable[str],
        group: str,
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> Consumer: ...

    def publish_many(self, events: Iterable[Event], topic: str | None = None) -> int:
        n = 0
        for e in events:
            self.publish(e, topic)
            n += 1
        return n

    def close(self) -> None:
        self.flush()


# --------------------------------------------------------------------------- embedded
class EmbeddedBus(Bus):
    """In-process logs: append-only lists per (topic, partition), group offsets in a dict.

    It is the embedded default, not a broker: one process, no persistence. It keeps the same
    semantics as Kafka (per-key order, explicit commits, dead letters) so the pipeline code is the same.
    """

    def __init__(self, partitions: int = 1):
        self.partitions = partitions
        self._logs: dict[tuple[str, int], list[tuple[str, bytes]]] = defaultdict(list)
        self._committed: dict[tuple[str, tuple[str, int]], int] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # consumers in other threads wait on it in poll

    def publish(self, event: Event, topic: str | None = None) -> None:
        topic = topic or event.TOPIC
        self.publish_raw(topic, event.partition_key(), encode(event))

    def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        with self._lock:
            self._logs[(topic, partition_for(key, self.partitions))].append((key, value))
            self._arrived.notify_all()

    def wait(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Block until ``ready()`` (checked on every publish) or ``timeout_s`` passes."""
        with self._arrived:
            self._arrived.wait_for(ready, timeout_s)

    def flush(self) -> None:
        return None

    def log(self, topic: str) -> list[bytes]:
        """Every value on a topic, partition by partition (tests and the dashboard read this)."""
        return [v for p in range(self.partitions) for _, v in self._logs.get((topic, p), [])]

    def consumer(self, topics, group, on_assign=None, on_revoke=None) -> Consumer:
        return _EmbeddedConsumer(self, list(topics), group, on_assign, on_revoke)


class _EmbeddedConsumer(Consumer):
    def __init__(self, bus: EmbeddedBus, topics: list[str], group: str, on_assign, on_revoke):
        self.bus, self.topics, self.group = bus, topics, group
        self.deadletters = 0
        self._parts = [(t, p) for t in topics for p in range(bus.partitions)]
        self._pos = {tp: bus._committed.get((group, tp), 0) for tp in self._parts}
        self._on_revoke = on_revoke
        if on_assign:
            on_assign(list(self._parts))

    def assignment(self) -> list[tuple[str, int]]:
        return list(self._parts)

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        for tp, off in offsets.items():
            if tp not in self._pos:
                raise ValueError(f"{tp} is not assigned to this consumer")
            self._pos[tp] = max(0, int(off))

    def lag(self) -> dict[tuple[str, int], int]:
        return {tp: len(self.bus._logs.get(tp, ())) - self._pos[tp] for tp in self._parts}

    def __iter__(self) -> Iterator[Message]:
        """Drains what is there now, without waiting for more."""
        while batch := self.poll(timeout_s=0):
            yield from batch

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """What is there; with nothing to read, waits up to ``timeout_s`` for a publish (another thread's)."""
        out = self._read(max_records)
        if not out and timeout_s > 0:
            self.bus.wait(lambda: any(self.lag().values()), timeout_s)
            out = self._read(max_records)
        return out

    def _read(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for tp in self._parts:
            log = self.bus._logs.get(tp, [])
            while self._pos[tp] < len(log) and len(out) < max_records:
                off = self._pos[tp]
                key, raw = log[off]
                self._pos[tp] = off + 1
                event, reason = decode_message(raw)
                if event is None:
                    self.deadletters += 1
                    self.bus.publish_raw(DEADLETTER, key, deadletter_record(tp[0], tp[1], off, raw, reason))
                    continue
                out.append(Message(tp[0], tp[1], off, key, event))
        return out

    def commit(self, offsets: dict[tuple[str, int], int] | None = None) -> None:
        offsets = offsets if offsets is not None else dict(self._pos)
        for tp, off in offsets.items():
            self.bus._committed[(self.group, tp)] = off

    def close(self) -> None:
        if self._on_revoke:
            self._on_revoke(list(self._parts))
