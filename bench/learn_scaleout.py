"""Scale-out of the learner: 1, 2 and 3 `continuum learn --partitioned` members of one group on 512 streams.

Why: `continuum learn` used to support one active member per group. With ``--partitioned`` each member
owns the state of the partitions the group gives it; this measures what that buys on this machine.

Setup: its own broker (tests/services/kafka.py), ``market.candles`` with 8 partitions. 512 streams are
replayed from the bundled Binance history: stream k carries symbol k % 8's hourly bars from a period
starting (k // 8) * 300 bars after 2021-01-01, all on one time grid, so every stream is a real price
path. For each member count M: M processes join a fresh group (shipped meta-weights, checkpoints every
24 bars, ``--no-lake``), then every bar's 512 candles are published as fast as the producer goes, and
the clock runs from the first publish until the last bar's signals of every stream are on ``signals``.
Throughput = streams x bars / that time. Prints a table and writes bench/results/learn_scaleout.json.
The machine's load (``uptime``) is recorded before and after each run.

    python bench/learn_scaleout.py [--streams 512] [--bars 200] [--members 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from continuum.schema import Candle  # noqa: E402

WARMUP = 168  # bars before the first signal
PARTITIONS = 8


def streams(n: int, bars: int, exchange: str) -> tuple[list[list[Candle]], list[str]]:
    """``bars`` rows of candles (one per stream and bar; gaps skipped) and the stream names."""
    from continuum.config import BUNDLED_DATA
    from ingest.replay import load_panel

    offsets = (n + 7) // 8
    p = load_panel(BUNDLED_DATA, None, "1h", datetime(2021, 1, 1, tzinfo=UTC), None)
    assert len(p.times) >= offsets * 300 + bars, "not enough history for that many streams"
    names, rows = [], [[] for _ in range(bars)]
    for k in range(n):
        j, o = k % len(p.symbols), (k // len(p.symbols)) * 300
        base, quote = p.symbols[j].split("/")
        sym = f"{base}{k // len(p.symbols):02d}/{quote}"
        names.append(sym)
        for t in range(bars):
            if p.present[o + t, j]:
                vals = (float(a[o + t, j]) for a in (p.open, p.high, p.low, p.close, p.volume))
                rows[t].append(Candle(exchange, sym, "1h", int(p.times[t]), *vals))
    return rows, names


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[:3].__str__()


def run_members(broker, m: int, rows: list[list[Candle]], names: list[str], tag: str, tmp: Path) -> dict:
    from continuum.kafka_bus import KafkaBus
    from tests.kafka.kafka_helpers import make_config

    cfg = make_config(broker)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CONTINUUM_BUS__KIND": "kafka",
        "CONTINUUM_BUS__PARTITIONS": str(PARTITIONS),
        "CONTINUUM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "CONTINUUM_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "CONTINUUM_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "CONTINUUM_LEARNER__CHECKPOINT_DIR": str(tmp / f"ckpt-{tag}"),
    }
    group = f"scale-{tag}"
    cmd = [
        sys.executable, "-m", "commands.cli", "learn", "--partitioned", "--symbols", ",".join(names),
        "--exchange", tag, "--group", group, "--pretrained", str(REPO / "data" / "hope_pretrained.pt"),
        "--checkpoint-every", "24", "--wait", "3600", "--no-lake",
    ]  # fmt: skip
    logs = [open(tmp / f"{tag}-m{i}.log", "w+") for i in range(m)]  # noqa: SIM115
    procs = [subprocess.Popen(cmd, env=env, stderr=logs[i], cwd=tmp) for i in range(m)]

    def running() -> int:
        total = 0
        for f in logs:
            f.seek(0)
            lines = [ln for ln in f.read().splitlines() if "running [" in ln]
            if lines:
                total += len(lines[-1].split("running [", 1)[1].rstrip("]").split(","))
        return total

    deadline = time.monotonic() + 180
    while running() != PARTITIONS or sum(1 for f in logs if (f.seek(0), "running [" in f.read())[1]) < m:
        assert time.monotonic() < deadline, "members did not share the partitions"
        time.sleep(0.2)
    time.sleep(1.0)  # the last rebalance settles
    bus = KafkaBus(cfg, partitions=PARTITIONS)
    reader = bus.consumer(["signals"], f"bench-read-{tag}")
    deadline = time.monotonic() + 120
    while not reader.assignment():
        reader.poll(timeout_s=0.2)
        assert time.monotonic() < deadline, "the signals reader did not join its group"
    load_before = _load()
    t0 = time.perf_counter()
    for row in rows:
        bus.publish_many(row)
    bus.flush()
    t_pub = time.perf_counter() - t0
    last_ts = rows[-1][0].ts
    want = sum(1 for c in rows[-1])
    seen: set[str] = set()
    n_signals = 0
    deadline = time.monotonic() + 1800
    while len(seen) < want:
        for msg in reader.poll(timeout_s=0.5, max_records=5000):
            if msg.key.startswith(tag):
                n_signals += 1
                if msg.event.ts == last_ts:
                    seen.add(msg.event.symbol)
        assert time.monotonic() < deadline, f"only {len(seen)} of {want} last-bar signals"
    wall = time.perf_counter() - t0
    load_after = _load()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(120)
    reader.close()
    bus.close()
    stream_bars = sum(len(r) for r in rows)
    return {
        "members": m,
        "streams": len(names),
        "bars": len(rows),
        "stream_bars": stream_bars,
        "publish_s": round(t_pub, 2),
        "wall_s": round(wall, 2),
        "stream_bars_per_s": round(stream_bars / wall, 1),
        "signals_seen": n_signals,
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=512)
    ap.add_argument("--bars", type=int, default=WARMUP + 32)
    ap.add_argument("--members", default="1,2,3")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "learn_scaleout.json"))
    args = ap.parse_args()
    from tests.services.kafka import KafkaBroker

    tmp = Path(tempfile.mkdtemp(prefix="scaleout-"))
    broker = KafkaBroker(tmp / "kafka")
    broker.start()
    results = []
    try:
        from continuum.kafka_bus import ensure_topics
        from tests.kafka.kafka_helpers import make_config

        ensure_topics(make_config(broker), partitions=PARTITIONS)
        for m in [int(x) for x in args.members.split(",")]:
            tag = "s" + uuid.uuid4().hex[:8]
            rows, names = streams(args.streams, args.bars, tag)
            r = run_members(broker, m, rows, names, tag, tmp)
            print(
                f"{m} member(s): {r['stream_bars']} stream-bars in {r['wall_s']} s = {r['stream_bars_per_s']} "
                f"stream-bars/s (load {r['load_before']} -> {r['load_after']})",
                flush=True,
            )
            results.append(r)
    finally:
        broker.stop()
    doc = {
        "what": "learn --partitioned members of one group, 512 replayed streams over 8 partitions",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
