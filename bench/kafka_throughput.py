"""Throughput of the Kafka bus (kafka-python) beside librdkafka (confluent-kafka), on one real broker.

Why: the learner must keep up with the market and chain streams, and kafka-python is pure Python.
This measures what the bus moves on this machine, end to end (schema encode -> produce with acks=all
and idempotence -> broker -> consumer group -> strict schema decode), and puts librdkafka beside it
doing the same work with the same settings, so the ratio is the cost of the Python client.

It starts its own broker with tests/services/kafka.py (Kafka jars from Maven Central, KRaft, 127.0.0.1),
runs candle-sized and trade-sized events through both clients, prints a table and writes
bench/results/kafka_throughput.json. It asserts nothing about time: it is a measurement, not a test.

    python bench/kafka_throughput.py [--trades 100000] [--candles 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer as RdConsumer  # noqa: E402
from confluent_kafka import Producer as RdProducer  # noqa: E402

from continuum.bus import decode_message, partition_for  # noqa: E402
from continuum.config import KafkaConfig  # noqa: E402
from continuum.kafka_bus import KafkaBus, ensure_topics  # noqa: E402
from continuum.schema import Candle, Event, Trade, encode  # noqa: E402
from tests.services.kafka import KAFKA_VERSION, KafkaBroker  # noqa: E402

PARTITIONS = 8
SYMBOLS = [f"{b}/USDT" for b in ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX")]
TS = 1_704_067_200_000


def make_events(kind: str, n: int) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        s = SYMBOLS[i % len(SYMBOLS)]
        if kind == "trade":
            out.append(Trade("binance", s, str(1_000_000_000 + i), TS + i, 42123.45 + i % 97, 0.0125, "buy"))
        else:
            p = 42000.0 + i % 500
            out.append(Candle("binance", s, "1m", TS + 60_000 * i, p, p + 12.5, p - 8.25, p + 3.75, 17.3125))
    return out


def run_kafka_python(cfg: KafkaConfig, topic: str, events: list[Event], lean: bool = True) -> dict:
    bus = KafkaBus(cfg, partitions=PARTITIONS, create_topics=False, lean=lean)
    t0 = time.perf_counter()
    for e in events:
        bus.publish(e, topic)
    bus.flush()
    produce_s = time.perf_counter() - t0
    c = bus.consumer([topic], group=f"bench-{topic}")
    n, t_join = 0, time.perf_counter()
    while n == 0:  # the group join and first fetch: reported apart, not in the rate
        n += len(c.poll(timeout_s=1.0, max_records=2000))
    t0, n0 = time.perf_counter(), n
    join_s = t0 - t_join
    while n < len(events):
        n += len(c.poll(timeout_s=1.0, max_records=2000))
    consume_s = (time.perf_counter() - t0) * len(events) / max(1, n - n0)  # rate after the first batch
    c.close()
    bus.close()
    return {"produce_s": produce_s, "consume_s": consume_s, "join_s": join_s}


def _pipeline_consumer(bootstrap: str, topic: str, n: int, ready, out) -> None:
    """Child process: join the group, say so, then consume and decode ``n`` events; report wall times."""
    cfg = KafkaConfig(bootstrap_servers=bootstrap, client_id="bench-consumer")
    bus = KafkaBus(cfg, partitions=PARTITIONS, create_topics=False)
    c = bus.consumer([topic], group=f"bench-pipe-{topic}")
    while not c.assignment():
        c.poll(timeout_s=0.2)
    ready.set()
    got, first = 0, None
    while got < n:
        batch = c.poll(timeout_s=1.0, max_records=2000)
        if batch and first is None:
            first = time.time()
        got += len(batch)
    out.put({"first": first, "done": time.time(), "events": got})
    c.close()
    bus.close()


def _rd_pipeline_consumer(bootstrap: str, topic: str, n: int, ready, out) -> None:
    """Child process: a librdkafka consumer in a group, strict schema decode; as ``_pipeline_consumer``."""
    c = RdConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-rdpipe-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    while not c.assignment():
        c.poll(0.2)
    ready.set()
    got, first = 0, None
    while got < n:
        msgs = c.consume(num_messages=2000, timeout=1.0)
        if msgs and first is None:
            first = time.time()
        for m in msgs:
            if m.error() is None:
                event, _reason = decode_message(m.value())
                got += event is not None
    out.put({"first": first, "done": time.time(), "events": got})
    c.close()


def _rd_producer(cfg: KafkaConfig) -> RdProducer:
    return RdProducer(
        {
            "bootstrap.servers": cfg.bootstrap_servers,
            "client.id": "bench-rdkafka",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": cfg.linger_ms,
            "batch.size": cfg.batch_size,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def run_pipeline(cfg: KafkaConfig, topic: str, events: list[Event], client: str = "lean") -> dict:
    """Producer (this process) and consumer (another process) at the same time, as a live pipeline runs:
    the rate is events / (time from the first publish until the consumer has decoded the last one).

    ``client``: ``lean`` (KafkaBus, records appended to kafka-python's accumulator), ``send`` (KafkaBus
    through ``KafkaProducer.send`` per record, as before issue 15) or ``rdkafka`` (confluent-kafka both sides).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    target = _rd_pipeline_consumer if client == "rdkafka" else _pipeline_consumer
    child = ctx.Process(target=target, args=(cfg.bootstrap_servers, topic, len(events), ready, out))
    child.start()
    if not ready.wait(120):
        child.kill()
        raise RuntimeError("pipeline consumer did not join its group")
    if client == "rdkafka":
        p = _rd_producer(cfg)
        sent = [0]

        def publish(e: Event) -> None:
            key = e.partition_key()
            p.produce(topic, encode(e), key.encode(), partition_for(key, PARTITIONS))
            sent[0] += 1
            if sent[0] % 10_000 == 0:  # delivery reports, as run_confluent
                p.poll(0)

        flush = p.flush  # noqa: E731
        close = p.flush  # noqa: E731
    else:
        bus = KafkaBus(cfg, partitions=PARTITIONS, create_topics=False, lean=client == "lean")

        def publish(e: Event) -> None:
            bus.publish(e, topic)

        flush, close = bus.flush, bus.close
    publish(events[0])  # connects and fetches metadata outside the timed window
    flush()
    t0 = time.time()
    for e in events[1:]:
        publish(e)
    flush()
    produced = time.time()
    r = out.get(timeout=300)
    child.join(30)
    close()
    n = len(events) - 1
    return {"produce_s": produced - t0, "pipeline_s": r["done"] - t0, "events": n, "consumed": r["events"]}


def run_confluent(cfg: KafkaConfig, topic: str, events: list[Event]) -> dict:
    common = {"bootstrap.servers": cfg.bootstrap_servers, "client.id": "bench-rdkafka"}
    p = RdProducer(
        {
            **common,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": cfg.linger_ms,
            "batch.size": cfg.batch_size,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    failed: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    t0 = time.perf_counter()
    for i, e in enumerate(events):
        key = e.partition_key()
        p.produce(topic, encode(e), key.encode(), partition_for(key, PARTITIONS), on_delivery=on_delivery)
        if i % 10_000 == 0:
            p.poll(0)
    remaining = p.flush(120)
    produce_s = time.perf_counter() - t0
    if remaining or failed:
        raise RuntimeError(f"librdkafka: {remaining} undelivered, errors: {failed[:3]}")
    c = RdConsumer(
        {**common, "group.id": f"bench-{topic}", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    n, t0 = 0, time.perf_counter()
    while n < len(events):
        for m in c.consume(num_messages=2000, timeout=1.0):
            if m.error() is None:
                event, _reason = decode_message(m.value())
                n += event is not None
    consume_s = time.perf_counter() - t0
    c.close()
    return {"produce_s": produce_s, "consume_s": consume_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trades", type=int, default=100_000)
    ap.add_argument("--candles", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=2, help="pipeline runs per client (the machine is shared)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "kafka_throughput.json"))
    args = ap.parse_args()

    pipeline: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="continuum-bench-kafka-") as tmp:
        broker = KafkaBroker(tmp, heap="1g")
        start_s = broker.start()
        try:
            cfg = KafkaConfig(bootstrap_servers=broker.bootstrap, client_id="bench")
            rows = []
            for kind, n in (("trade", args.trades), ("candle", args.candles)):
                events = make_events(kind, n)
                size = sum(len(encode(e)) for e in events) / n
                for client, fn in (
                    ("kafka-python, send() per record", lambda c, t, e: run_kafka_python(c, t, e, lean=False)),
                    ("kafka-python (KafkaBus)", run_kafka_python),
                    ("confluent-kafka", run_confluent),
                ):
                    topic = f"bench.{kind}.{len(rows)}"
                    ensure_topics(cfg, [topic], PARTITIONS)
                    r = fn(cfg, topic, events)
                    row = {
                        "client": client,
                        "event": kind,
                        "events": n,
                        "bytes_per_event": round(size, 1),
                        "produce_events_s": round(n / r["produce_s"]),
                        "produce_MB_s": round(n * size / r["produce_s"] / 1e6, 2),
                        "consume_events_s": round(n / r["consume_s"]),
                        "consume_MB_s": round(n * size / r["consume_s"] / 1e6, 2),
                        "end_to_end_events_s": round(n / (r["produce_s"] + r["consume_s"])),
                        "mode": "sequential: produce all, then consume all",
                    }
                    if "join_s" in r:
                        row["consumer_join_s"] = round(r["join_s"], 2)
                    rows.append(row)
                    print(
                        f"{kind:6} {client:32} {size:6.0f} B  produce {row['produce_events_s']:>8,}/s "
                        f"{row['produce_MB_s']:6.2f} MB/s  consume {row['consume_events_s']:>8,}/s "
                        f"{row['consume_MB_s']:6.2f} MB/s  end-to-end {row['end_to_end_events_s']:>8,}/s",
                        flush=True,
                    )
            names = {
                "send": "kafka-python, send() per record",
                "lean": "kafka-python (KafkaBus, lean append)",
                "rdkafka": "confluent-kafka (librdkafka)",
            }
            for rep in range(args.repeats):
                for kind, n in (("trade", args.trades), ("candle", args.candles)):
                    for client in ("send", "lean", "rdkafka"):
                        topic = f"bench.pipe.{kind}.{client}.{rep}"
                        ensure_topics(cfg, [topic], PARTITIONS)
                        load = os.getloadavg()
                        r = run_pipeline(cfg, topic, make_events(kind, n + 1), client)
                        row = {
                            "client": names[client],
                            "event": kind,
                            "repeat": rep,
                            "events": r["events"],
                            "mode": "concurrent: producer process + consumer-group process at once",
                            "produce_events_s": round(r["events"] / r["produce_s"]),
                            "end_to_end_events_s": round(r["events"] / r["pipeline_s"]),
                            "load_1m_before": round(load[0], 2),
                        }
                        pipeline.append(row)
                        print(
                            f"{kind:6} pipeline {client:8} produce {row['produce_events_s']:>8,}/s  "
                            f"end-to-end {row['end_to_end_events_s']:>8,}/s (load {load[0]:.1f})",
                            flush=True,
                        )
        finally:
            broker.stop()

    ratios = {}
    for kind in ("trade", "candle"):
        kp = next(r for r in rows if r["event"] == kind and r["client"] == "kafka-python (KafkaBus)")
        rd = next(r for r in rows if r["event"] == kind and r["client"] == "confluent-kafka")
        ratios[kind] = {
            k: round(kp[k] / rd[k], 2) for k in ("produce_events_s", "consume_events_s", "end_to_end_events_s")
        }
        for rep in range(args.repeats):  # the pipeline: KafkaBus (lean) over librdkafka, same run, same repeat
            lean, rd = (
                next(r for r in pipeline if r["event"] == kind and r["repeat"] == rep and r["client"] == names[c])
                for c in ("lean", "rdkafka")
            )
            ratios[kind][f"pipeline_end_to_end_repeat{rep}"] = round(
                lean["end_to_end_events_s"] / rd["end_to_end_events_s"], 2
            )
    result = {
        "what": "events through one single-node KRaft broker on 127.0.0.1; acks=all, idempotence, schema encode/decode",
        "kafka_version": KAFKA_VERSION,
        "partitions": PARTITIONS,
        "linger_ms": cfg.linger_ms,
        "batch_size": cfg.batch_size,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "broker_start_s": round(start_s, 1),
        "results": rows,
        "pipeline": pipeline,
        "kafka_python_over_librdkafka": ratios,
        "target_trade_end_to_end_events_s": 20_000,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratios kafka-python / librdkafka: {json.dumps(ratios)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
