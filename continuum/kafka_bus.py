"""The bus on Apache Kafka: the :class:`~continuum.bus.Bus` interface over kafka-python.

Why these choices (docs/kafka.md has the long form):

- **Topics** are DESIGN §3's (``market.candles`` ... ``deadletter``), created on start with the
  configured partition count (``bus.partitions``) and replication factor; an existing topic is used as
  it is, with the partition count the broker reports.
- **Keys and partitions.** The message key is the event's ``partition_key()`` (``exchange:symbol``,
  ``chain:address``), and the partition is :func:`continuum.bus.partition_for` of that key, the same
  rule as the embedded bus, so an asset lives on the same partition number under either bus and its
  events keep their order.
- **Producer**: ``acks=all`` and idempotence (no loss, no duplicates from retries), unbounded
  retries inside ``delivery.timeout.ms``, batching by ``kafka.linger_ms``/``kafka.batch_size``.
  A failed delivery is recorded by the send's error callback and :meth:`KafkaBus.flush` raises
  :class:`KafkaDeliveryError`: nothing fails silently.
- **Consumer**: a consumer group with auto-commit off. The owner of the derived state commits
  (:meth:`KafkaConsumer.commit`) only after its state is durable. ``on_assign`` lets it load the
  state of the partitions it gets; ``on_revoke`` (a rebalance, or :meth:`close`) lets it save that state
  and commit while it still owns them. A partition *lost* to the group (this member was evicted) also
  calls ``on_revoke`` so state is saved, but a commit then is skipped: another member owns the
  partition and resumes from the last commit (at-least-once; natural keys make replays idempotent).
- **Dead letters**: a value that does not decode (bad JSON, unknown schema version, failed validation)
  is published to ``deadletter`` with the reason and its exact bytes
  (:func:`continuum.bus.deadletter_record`), the consumer's ``deadletters`` counter goes up, and the
  stream goes on. Dead letters are flushed before any commit that moves past them.
- **Security**: bootstrap servers, client id, SASL (PLAIN/SCRAM) and SSL files pass straight through
  from :class:`~continuum.config.KafkaConfig`; the password comes from the environment
  (``CONTINUUM_KAFKA__SASL_PASSWORD``) and appears in no repr or log line.

Example (a running broker; ``continuum.bus.make_bus`` does the same from the configuration)::

    from continuum.config import KafkaConfig
    bus = KafkaBus(KafkaConfig(bootstrap_servers="127.0.0.1:9092"), partitions=8)
    bus.publish(candle); bus.flush()
    c = bus.consumer(["market.candles"], group="learner")
    for m in c.poll(): ...
    c.commit()
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka import KafkaConsumer as _KafkaPythonConsumer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from continuum.bus import (
    Bus,
    Consumer,
    Message,
    OnAssign,
    OnRevoke,
    deadletter_record,
    decode_message,
    partition_for,
)
from continuum.config import KafkaConfig
from continuum.errors import UserError
from continuum.schema import DEADLETTER, TOPICS, Event, encode

log = logging.getLogger(__name__)
_LEAN_MAX_VALUE = 512 * 1024  # larger values go through send(), which checks the size against the limits
_CONNECT_ERRORS = (KafkaConnectionError, KafkaTimeoutError, OSError)


class KafkaDeliveryError(RuntimeError):
    """Some published events were not acknowledged by the brokers (after the producer's retries)."""


class KafkaUnavailableError(UserError):
    """No broker answered at the configured bootstrap servers (a configuration or network problem)."""


class _Secret(str):
    """The SASL password as kafka-python gets it: the real string to encode, ``***`` when printed.

    kafka-python logs its whole configuration at DEBUG level; this keeps the password out of logs.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"


# kafka-python's DEBUG wire dumps include the SASL handshake bytes, i.e. the password in clear text
_WIRE_LOGGERS = ("kafka.protocol.parser", "kafka.net.connection", "kafka.net.transport")


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """kafka-python connection options from the configuration (shared by producer, consumer, admin).

    Only what is set is passed, so kafka-python's defaults stay in force for the rest. With a SASL
    password, kafka-python's wire-dump loggers are held at INFO so the handshake never reaches a log.
    """
    opts: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()],
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.sasl_mechanism:
        opts["sasl_mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username:
        opts["sasl_plain_username"] = cfg.sasl_username
    if cfg.sasl_password:
        opts["sasl_plain_password"] = _Secret(cfg.sasl_password)
        for name in _WIRE_LOGGERS:
            wire = logging.getLogger(name)
            if wire.getEffectiveLevel() < logging.INFO:
                wire.setLevel(logging.INFO)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(cfg, name)
        if value:
            opts[name] = value
    return opts


def _unavailable(cfg: KafkaConfig, err: Exception) -> KafkaUnavailableError:
    hint = "start a broker (compose.yaml) or fix the address"
    if cfg.security_protocol.startswith("SASL"):
        hint += "; or the login failed: check kafka.sasl_username and CONTINUUM_KAFKA__SASL_PASSWORD"
    return KafkaUnavailableError(
        f"kafka.bootstrap_servers: no Kafka broker answered at {cfg.bootstrap_servers} "
        f"({cfg.security_protocol}; {type(err).__name__}: {err}); {hint}"
    )


def ensure_topics(
    cfg: KafkaConfig,
    topics: Iterable[str] = TOPICS,
    partitions: int = 8,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create the missing topics; return ``{topic: partition count}`` as the cluster reports it.

    Existing topics are left as they are (a partition count is never changed behind the operators'
    back: it would move keys to other partitions). With a replication factor of 3 or more the topics get
    ``min.insync.replicas=2``, so ``acks=all`` means two copies.
    """
    topics = list(dict.fromkeys(topics))
    rf = replication_factor or cfg.replication_factor
    try:
        admin = KafkaAdminClient(
            **client_options(cfg),
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
        )
    except _CONNECT_ERRORS as e:
        raise _unavailable(cfg, e) from None
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            configs = {"min.insync.replicas": "2"} if rf >= 3 else {}
            new = [NewTopic(t, partitions, rf, topic_configs=configs) for t in missing]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while True:
            counts: dict[str, int] = {}
            for desc in admin.describe_topics(topics):
                if desc.get("error_code", 0) == 0 and desc.get("partitions"):
                    counts[desc.get("name") or desc.get("topic")] = len(desc["partitions"])
            if len(counts) == len(topics):
                return counts
            if time.monotonic() > deadline:
                raise KafkaError(f"topics not ready after {timeout_s}s: {sorted(set(topics) - set(counts))}")
            time.sleep(0.1)
    finally:
        admin.close()


class KafkaBus(Bus):
    """The bus on a Kafka cluster. Creates DESIGN §3's topics on start; one idempotent producer."""

    def __init__(
        self,
        cfg: KafkaConfig,
        partitions: int = 8,
        create_topics: bool = True,
        flush_timeout_s: float = 180.0,
        connect_timeout_s: float = 30.0,
        lean: bool = True,
    ):
        self.cfg = cfg
        self.partitions = partitions
        self.flush_timeout_s = flush_timeout_s
        self._topic_partitions: dict[str, int] = {}
        if create_topics:
            self._topic_partitions.update(ensure_topics(cfg, TOPICS, partitions, connect_timeout_s=connect_timeout_s))
        self._producer: KafkaProducer | None = None
        self._routes: dict[tuple[str, str], tuple[bytes, TopicPartition]] = {}
        self._watched: dict[TopicPartition, Any] = {}  # the record batch whose outcome is watched, per partition
        self._known: set[str] = set()  # topics whose metadata this producer has
        self._lean = lean
        self._errors: list[str] = []
        self._failed = 0
        self._consumers: list[KafkaConsumer] = []

    def __repr__(self) -> str:  # no secrets: the password is never part of it
        return (
            f"KafkaBus(bootstrap_servers={self.cfg.bootstrap_servers!r}, client_id={self.cfg.client_id!r}, "
            f"security_protocol={self.cfg.security_protocol!r}, partitions={self.partitions})"
        )

    # ------------------------------------------------------------------ producing
    @property
    def producer(self) -> KafkaProducer:
        """Created on first use: a consume-only process needs one only for dead letters."""
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    **client_options(self.cfg),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self.cfg.linger_ms,
                    batch_size=self.cfg.batch_size,
                    max_in_flight_requests_per_connection=5,
                )
            except _CONNECT_ERRORS as e:
                raise _unavailable(self.cfg, e) from None
            self._watched, self._known = {}, set()
            # the lean append needs the accumulator and sender that kafka-python 2.x/3.x have; else plain send
            self._lean = self._lean and hasattr(self._producer, "_accumulator") and hasattr(self._producer, "_sender")
        return self._producer

    def _partition_count(self, topic: str) -> int:
        n = self._topic_partitions.get(topic)
        if n is None:
            parts = self.producer.partitions_for(topic)  # waits for metadata; raises if the topic is absent
            n = self._topic_partitions[topic] = len(parts)
        return n

    def publish(self, event: Event, topic: str | None = None) -> None:
        """Keyed by the event's partition key; the value is the schema's JSON (with ``v``)."""
        self.publish_raw(topic or event.TOPIC, event.partition_key(), encode(event))

    def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        route = self._routes.get((topic, key))
        if route is None:  # per (topic, key): the key's bytes and its partition, computed once
            if len(self._routes) > 100_000:  # keys of addresses are unbounded: keep the cache small
                self._routes.clear()
            tp = TopicPartition(topic, partition_for(key, self._partition_count(topic)))
            route = self._routes[(topic, key)] = (key.encode(), tp)
        key_bytes, tp = route
        producer = self.producer
        if topic not in self._known:  # the producer fetches (and keeps refreshing) this topic's metadata
            producer.partitions_for(topic)
            self._known.add(topic)
        if self._lean and len(value) < _LEAN_MAX_VALUE:
            self._append(producer, tp, key_bytes, value, key)
        else:
            future = producer.send(topic, key=key_bytes, value=value, partition=tp.partition)
            future.add_errback(self._on_send_error, topic, key)

    def _append(self, producer: KafkaProducer, tp: TopicPartition, key_bytes: bytes, value: bytes, key: str) -> None:
        """The record straight into kafka-python's record accumulator: what ``send`` does for our records
        without its per-record checks (types, headers, metadata, partitioner, size estimate, debug line).

        Measured (docs/kafka.md): the producer alone runs 1.7x faster than through ``send``. Failures
        are watched once per record batch (the batch's produce future), not once per record: a batch the
        broker refuses fails all its records, and a batch accepted with per-record errors reports them.
        """
        future, full, new_batch, _ = producer._accumulator.append(tp, None, key_bytes, value, [])
        if full or new_batch:
            producer._sender.wakeup()
        batch = getattr(future, "_produce_future", None)
        if batch is None:  # another kafka-python layout: watch the record itself
            future.add_errback(self._on_send_error, tp.topic, key)
        elif self._watched.get(tp) is not batch:
            self._watched[tp] = batch
            batch.add_callback(self._on_batch_done, tp.topic, key)
            batch.add_errback(self._on_send_error, tp.topic, key)

    def _on_batch_done(self, topic: str, key: str, result) -> None:
        _offset, _ts, record_errors = result
        if record_errors is not None:  # the batch was written but some of its records were refused
            self._on_send_error(topic, key, record_errors(0))

    def _on_send_error(self, topic: str, key: str, exc: BaseException) -> None:
        self._failed += 1
        if len(self._errors) < 5:
            self._errors.append(f"{topic} key={key!r}: {type(exc).__name__}: {exc}")
        log.error("kafka delivery failed on %s key=%r: %s", topic, key, exc)

    def flush(self) -> None:
        """Block until every published event is acknowledged by all in-sync replicas; raise otherwise."""
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError as e:
            raise KafkaDeliveryError(
                f"events not acknowledged within {self.flush_timeout_s}s by {self.cfg.bootstrap_servers}: {e}"
            ) from None
        if self._failed:
            n, first = self._failed, "; ".join(self._errors)
            self._failed, self._errors = 0, []
            # an idempotent producer that saw a fatal error refuses every later send: start a fresh one
            self._producer.close(timeout=5)
            self._producer = None
            raise KafkaDeliveryError(f"{n} events were not delivered to Kafka (first: {first})")

    # ------------------------------------------------------------------ consuming
    def consumer(
        self,
        topics: Iterable[str],
        group: str,
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> KafkaConsumer:
        c = KafkaConsumer(self, list(topics), group, on_assign, on_revoke)
        self._consumers.append(c)
        return c

    def close(self) -> None:
        """Close open consumers (their ``on_revoke`` runs), flush, then close the producer."""
        for c in self._consumers:
            c.close()
        self._consumers.clear()
        try:
            self.flush()
        finally:
            if self._producer is not None:
                self._producer.close(timeout=10)
                self._producer = None


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python's rebalance hooks, forwarded to the owner's ``on_assign``/``on_revoke``.

    kafka-python 3 runs these hooks on the consumer's IO loop, where a blocking commit is refused.
    So a commit the owner makes inside ``on_revoke`` is collected, and awaited here before the
    partitions are given up: the next owner starts exactly where this one stopped.
    """

    def __init__(self, consumer: KafkaConsumer):
        self.consumer = consumer

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer._assigned(assigned)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoke(revoked, lost=False)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        await self._revoke(lost, lost=True)

    async def _revoke(self, tps: set[TopicPartition], lost: bool) -> None:
        offsets = self.consumer._revoked(tps, lost)
        if offsets:
            await self.consumer._c._coordinator._commit_offsets_sync_async(offsets)


class KafkaConsumer(Consumer):
    """One member of a consumer group. Commits are explicit; see the module docstring for callbacks."""

    def __init__(
        self,
        bus: KafkaBus,
        topics: list[str],
        group: str,
        on_assign: OnAssign | None,
        on_revoke: OnRevoke | None,
    ):
        self.bus, self.topics, self.group = bus, topics, group
        self.deadletters = 0
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._pos: dict[tuple[str, int], int] = {}  # next offset after what poll returned
        self._pending_deadletters = False
        self._losing = False
        self._in_rebalance = False
        self._deferred: dict[TopicPartition, OffsetAndMetadata] = {}
        self._retry: dict[TopicPartition, OffsetAndMetadata] = {}  # commits refused mid-rebalance
        self._closed = False
        cfg = bus.cfg
        try:
            self._c = _KafkaPythonConsumer(
                **client_options(cfg),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=cfg.session_timeout_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            )
        except _CONNECT_ERRORS as e:
            raise _unavailable(cfg, e) from None
        self._c.subscribe(topics=topics, listener=_Listener(self))

    # rebalance hooks (run inside poll() or close(), on this consumer's thread)
    def _assigned(self, tps: set[TopicPartition]) -> None:
        parts = sorted((tp.topic, tp.partition) for tp in tps)
        log.info("group %s: assigned %s", self.group, parts)
        if self._on_assign and parts:
            self._on_assign(parts)

    def _revoked(self, tps: set[TopicPartition], lost: bool) -> dict[TopicPartition, OffsetAndMetadata]:
        """Run ``on_revoke``; return the commits it asked for (the listener awaits them)."""
        parts = sorted((tp.topic, tp.partition) for tp in tps)
        log.info("group %s: %s %s", self.group, "lost" if lost else "revoked", parts)
        self._losing, self._in_rebalance, self._deferred = lost, True, {}
        try:
            if self._on_revoke and parts:
                self._on_revoke(parts)
        finally:
            self._losing = self._in_rebalance = False
            for p in parts:
                self._pos.pop(p, None)
        return {} if lost else self._deferred

    def assignment(self) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in self._c.assignment())

    def lag(self) -> dict[tuple[str, int], int]:
        """High watermark (from the last fetch response: no extra request) minus the next offset to read."""
        out = {}
        for tp in self._c.assignment():
            hw = self._c.highwater(tp)
            pos = self._pos.get((tp.topic, tp.partition))
            if hw is not None and pos is not None:
                out[(tp.topic, tp.partition)] = max(0, hw - pos)
        return out

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Next poll of each partition starts at the given offset (safe inside ``on_assign``)."""
        for (topic, partition), off in offsets.items():
            self._c.seek(TopicPartition(topic, partition), int(off))
            self._pos[(topic, partition)] = int(off)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Decoded messages in partition order; malformed ones are dead-lettered and skipped."""
        batches = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[Message] = []
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            for r in records:
                key = r.key.decode("utf-8", "replace") if r.key is not None else ""
                raw = r.value if r.value is not None else b""
                event, reason = decode_message(raw)
                if event is None:
                    self._deadletter(topic, partition, r.offset, key, raw, reason or "undecodable")
                else:
                    out.append(Message(topic, partition, r.offset, key, event))
            if records:
                self._pos[(topic, partition)] = records[-1].offset + 1
        if self._retry and not self._in_rebalance:
            self._commit_now({})  # the rebalance that refused them has completed inside this poll
        return out

    def _deadletter(self, topic: str, partition: int, offset: int, key: str, raw: bytes, reason: str) -> None:
        self.deadletters += 1
        log.warning("dead letter %s[%d]@%d: %s", topic, partition, offset, reason)
        if topic == DEADLETTER:
            return  # a consumer of the dead letters themselves: never loop them back
        self.bus.publish_raw(DEADLETTER, key, deadletter_record(topic, partition, offset, raw, reason))
        self._pending_deadletters = True

    def commit(self, offsets: dict[tuple[str, int], int] | None = None) -> None:
        """Commit ``{(topic, partition): next_offset}`` (default: all that poll returned), synchronously.

        Dead letters published so far are flushed first, so a commit never moves past a malformed
        message whose dead letter could still be lost.
        """
        offsets = dict(self._pos) if offsets is None else offsets
        if not offsets:
            return
        if self._losing:
            log.warning("group %s: partitions lost to the group; not committing %s", self.group, sorted(offsets))
            return
        if self._pending_deadletters:
            self.bus.flush()
            self._pending_deadletters = False
        commits = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        if self._in_rebalance:
            self._deferred.update(commits)  # committed by the listener before the partitions go
            return
        self._commit_now(commits)

    def _commit_now(self, commits: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit, with any commits a rebalance refused earlier (newer offsets win).

        A group that is rebalancing (e.g. a crashed member's session just expired) refuses commits; that
        is not a failure of the caller's state, which is already durable: the offsets are kept and sent
        again after the next poll, where kafka-python completes the rebalance.
        """
        mine = set(self._c.assignment())  # a deferred commit for a partition since lost is moot
        commits = {**{tp: om for tp, om in self._retry.items() if tp in mine}, **commits}
        self._retry = {}
        if not commits:
            return
        try:
            self._c.commit(commits)
        except RebalanceInProgressError:
            self._retry = commits
            log.warning(
                "group %s is rebalancing: commit of %d partitions deferred to the next poll", self.group, len(commits)
            )
        except CommitFailedError as e:
            raise KafkaError(
                f"group {self.group}: commit of {sorted((tp.topic, tp.partition) for tp in commits)} failed; "
                "the partitions were reassigned "
                f"and their new owner resumes from the last commit ({e})"
            ) from None

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset for one partition (None if none): for checks and dashboards."""
        return self._c.committed(TopicPartition(topic, partition))

    def close(self) -> None:
        """Leave the group; ``on_revoke`` runs first so the owner can save its state and commit."""
        if self._closed:
            return
        self._closed = True
        self._c.close(autocommit=False)
