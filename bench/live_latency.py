"""Latency of the live learner for 64 assets: candle close -> signal on the ``signals`` topic, and where it goes.

Why: a desk watching signals cares how long after a bar closes its forecast is out (target: p99 < 100 ms on
CPU), and the service recomputes the features over its whole window every bar, which may dominate.

A. End to end on a real broker (its own, tests/services/kafka.py): one ``continuum learn`` process (shipped
   meta-weights, 64 streams replayed from the bundled history as in bench/learn_scaleout.py) first catches
   up on ``--history`` bars published at once, then ``--bars`` more arrive one bar every ``--interval``
   seconds. For each paced bar: t0 = the moment its first candle is handed to the producer (the candle
   closed at the source), t1 = the moment a separate reader process has decoded the last of the bar's 64
   signals from ``signals``. Latency = t1 - t0 (both wall clocks of this machine).
B. In process, per stage, at several window lengths: ``build_features`` over the window (what the service
   recomputes every bar) and one Hope step for 64 streams (``run_stream`` on the window's tail), each timed
   over ``--reps`` bars.

Prints both and writes bench/results/live_latency.json, with the load (``/proc/loadavg``) before and after.

    python bench/live_latency.py [--assets 64] [--history 200] [--bars 100] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.learn_scaleout import streams  # noqa: E402

PARTITIONS = 8


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def _reader(bootstrap: str, tag: str, want: int, ready, out_path: str) -> None:
    """Child process: record when each bar's ``want``-th signal has been decoded (wall clock)."""
    from continuum.config import KafkaConfig
    from continuum.kafka_bus import KafkaBus

    bus = KafkaBus(KafkaConfig(bootstrap_servers=bootstrap, client_id="latency-reader"), create_topics=False)
    c = bus.consumer(["signals"], f"latency-{tag}")
    while not c.assignment():
        c.poll(timeout_s=0.2)
    ready.set()
    counts: dict[int, int] = {}
    done: dict[int, float] = {}
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 15:
        batch = c.poll(timeout_s=0.2, max_records=5000)
        now = time.time()
        if batch:
            idle_since = time.monotonic()
        for m in batch:
            if m.key.startswith(tag):
                counts[m.event.ts] = counts.get(m.event.ts, 0) + 1
                if counts[m.event.ts] == want:
                    done[m.event.ts] = now
    Path(out_path).write_text(json.dumps({str(k): v for k, v in done.items()}))
    c.close()
    bus.close()


def end_to_end(args, tmp: Path) -> dict:
    from continuum.kafka_bus import KafkaBus, ensure_topics
    from tests.kafka.kafka_helpers import make_config
    from tests.services.kafka import KafkaBroker

    broker = KafkaBroker(tmp / "kafka")
    broker.start()
    try:
        cfg = make_config(broker)
        ensure_topics(cfg, partitions=PARTITIONS)
        tag = "l" + uuid.uuid4().hex[:8]
        rows, names = streams(args.assets, args.history + args.bars, tag)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "CONTINUUM_BUS__KIND": "kafka",
            "CONTINUUM_BUS__PARTITIONS": str(PARTITIONS),
            "CONTINUUM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "CONTINUUM_LEARNER__CHECKPOINT_DIR": str(tmp / "ckpt"),
        }
        cmd = [
            sys.executable, "-m", "commands.cli", "learn", "--symbols", ",".join(names), "--exchange", tag,
            "--group", f"lat-{tag}", "--pretrained", str(REPO / "data" / "hope_pretrained.pt"),
            "--checkpoint-every", "24", "--wait", "3600", "--no-lake", "-v",
        ]  # fmt: skip
        log = open(tmp / "learner.log", "w+")  # noqa: SIM115
        learner = subprocess.Popen(cmd, env=env, stderr=log, cwd=tmp)
        ready = mp.get_context("spawn").Event()
        out_path = str(tmp / "arrivals.json")
        reader = mp.get_context("spawn").Process(
            target=_reader, args=(broker.bootstrap, tag, len(names), ready, out_path)
        )
        reader.start()
        ready.wait(120)
        bus = KafkaBus(cfg, partitions=PARTITIONS)
        for row in rows[: args.history]:  # catch-up: published at once
            bus.publish_many(row)
        bus.flush()
        caught_up = f"bar {args.history - 1} "
        deadline = time.monotonic() + 900
        while True:
            log.seek(0)
            if caught_up in log.read():
                break
            assert time.monotonic() < deadline and learner.poll() is None, "learner did not catch up"
            time.sleep(0.2)
        load_before = _load()
        sent: dict[int, float] = {}
        for row in rows[args.history :]:
            t_next = time.monotonic() + args.interval
            sent[row[0].ts] = time.time()
            bus.publish_many(row)
            bus.flush()
            time.sleep(max(0.0, t_next - time.monotonic()))
        reader.join(120)
        load_after = _load()
        learner.terminate()
        learner.wait(60)
        bus.close()
        arrived = {int(k): v for k, v in json.loads(Path(out_path).read_text()).items()}
        lat = np.array([arrived[ts] - t0 for ts, t0 in sent.items() if ts in arrived]) * 1000
        missing = len(sent) - len(lat)
        return {
            "assets": args.assets,
            "history_bars": args.history,
            "paced_bars": len(sent),
            "interval_s": args.interval,
            "missing": missing,
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 1),
                "p90": round(float(np.percentile(lat, 90)), 1),
                "p99": round(float(np.percentile(lat, 99)), 1),
                "max": round(float(lat.max()), 1),
            },
            "load_before": load_before,
            "load_after": load_after,
        }
    finally:
        broker.stop()


def stages(args) -> list[dict]:
    """Features over the window vs one Hope step, for 64 streams, at several window lengths."""
    import torch

    from continuum.panel import Panel
    from learner.features import MAX_HORIZON, build_features
    from learner.models import load_hope
    from learner.stream import run_stream

    torch.set_num_threads(1)
    windows = [int(w) for w in args.windows.split(",")]
    rows, names = streams(args.assets, max(windows) + args.reps, "binance")
    T, B = len(rows), len(names)
    col = {s: j for j, s in enumerate(names)}
    arr = np.full((5, T, B), np.nan)
    times = np.array([r[0].ts for r in rows], dtype=np.int64)
    for t, row in enumerate(rows):
        for c in row:
            arr[:, t, col[c.symbol]] = (c.open, c.high, c.low, c.close, c.volume)
    out = []
    model = load_hope(str(REPO / "data" / "hope_pretrained.pt"))
    for w in windows:
        feat, step = [], []
        model.reset(B)
        for k in range(w, w + args.reps):
            lo = k - w + 1
            panel = Panel.from_ohlcv(names, "1h", times[lo : k + 1], arr[:, lo : k + 1], [int(times[0])] * B)
            t0 = time.perf_counter()
            fp = build_features(panel)
            t1 = time.perf_counter()
            s = k - lo
            a = max(0, s - MAX_HORIZON)
            run_stream(model, fp.slice(a, s + 1), start=s - a, end=s - a + 1, chunk=1, clock0=-(lo + a),
                       record_activity=True)  # fmt: skip
            t2 = time.perf_counter()
            feat.append(t1 - t0)
            step.append(t2 - t1)
        f, m = np.array(feat) * 1000, np.array(step) * 1000
        bar = np.array(_service_bars(rows, names, w, args.reps, model)) * 1000
        out.append({
            "window_bars": w,
            "features_ms": {"p50": round(float(np.median(f)), 1), "p99": round(float(np.percentile(f, 99)), 1)},
            "hope_step_ms": {"p50": round(float(np.median(m)), 1), "p99": round(float(np.percentile(m, 99)), 1)},
            "service_bar_ms": {"p50": round(float(np.median(bar)), 1), "p99": round(float(np.percentile(bar, 99)), 1)},
        })  # fmt: skip
        print(
            f"window {w}: features {out[-1]['features_ms']} ms, hope step {out[-1]['hope_step_ms']} ms, "
            f"whole bar in the service {out[-1]['service_bar_ms']} ms",
            flush=True,
        )
    return out


def _service_bars(rows, names: list[str], window: int, reps: int, model) -> list[float]:
    """``LearnerService.process_bar`` (panel, features, Hope, position rule, publish) with a full window."""
    from continuum.bus import EmbeddedBus
    from learner.service import LearnerService
    from strategies.positions import feed_rule

    svc = LearnerService(EmbeddedBus(), model, names, "binance", window=window, wait_s=3600.0,
                         checkpoint_dir=tempfile.mkdtemp(), positions=feed_rule())  # fmt: skip
    model.reset(len(names))
    svc.t0 = rows[0][0].ts
    for row in rows[: window + reps]:
        for c in row:
            svc.bars[c.symbol][c.ts] = (c.open, c.high, c.low, c.close, c.volume)
            svc.first_seen.setdefault(c.symbol, c.ts)
    svc.next_bar = window - 1
    svc.process_bar()  # the first bar builds the window's array from the candles; later bars add a column
    out = []
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        svc.process_bar()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=64)
    ap.add_argument("--history", type=int, default=200, help="bars published at once before the paced ones")
    ap.add_argument("--bars", type=int, default=100, help="paced bars measured")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between paced bars")
    ap.add_argument("--windows", default="256,1024,4800", help="window lengths for the per-stage timing")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "live_latency.json"))
    args = ap.parse_args()
    doc: dict = {"machine": {"cpus": os.cpu_count()}, "load_start": _load()}
    if not args.skip_e2e:
        e2e = end_to_end(args, Path(tempfile.mkdtemp(prefix="latency-")))
        print(f"end to end, {args.assets} assets: {e2e}", flush=True)
        doc["end_to_end"] = e2e
    doc["stages"] = stages(args)
    doc["load_end"] = _load()
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
