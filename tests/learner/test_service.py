"""`continuum learn`: the live path equals the replay path; crash and resume lose and duplicate nothing.

(a) embedded bus: real Binance candles (2 symbols, ~3 weeks) replayed onto an EmbeddedBus; the service's
    signals equal ``run_stream`` over the same bars with the same model (to 1e-5), and their target weights
    equal the feed rule run over the replay (``strategies.positions.feed_weights``); stop/resume and a
    simulated crash between checkpoints give the same signals, exactly once after natural-key dedup.
(b) real Kafka broker: the service runs as a subprocess, is SIGKILLed mid-stream and restarted; the
    ``signals`` topic and the lake cover every bar exactly once after dedup (repeats are byte-identical),
    the restarted process's forecasts equal an uninterrupted run, and a malformed candle is dead-lettered
    while the stream goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from continuum.bus import EmbeddedBus
from continuum.config import BUNDLED_DATA
from continuum.lake import Lake
from continuum.schema import NEUTRAL_WEIGHT, Candle, Signal, decode, encode
from ingest.replay import load_panel
from learner.checkpoint import save_pretrained
from learner.features import build_features
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.service import LearnerService
from learner.signals import frame_to_signals, signals_frame
from learner.stream import run_stream
from strategies.positions import feed_rule, feed_weights

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
START, END = datetime(2022, 5, 2, tzinfo=UTC), datetime(2022, 5, 22, tzinfo=UTC)  # LUNA weeks: 480 bars


def small_cfg() -> HopeConfig:
    return HopeConfig(d_model=16, d_hidden=16, cms_hidden=16, cms_periods=(24, 48), cms_lr=(3e-3, 1e-3))


@pytest.fixture(scope="module")
def panel():
    return load_panel(BUNDLED_DATA, SYMBOLS, "1h", START, END)


@pytest.fixture(scope="module")
def net() -> HopeNet:
    torch.manual_seed(7)
    return HopeNet(small_cfg())


def candles(panel, exchange: str = "binance") -> list[Candle]:
    out = []
    for t, ts in enumerate(panel.times.tolist()):
        for b, s in enumerate(panel.symbols):
            if panel.present[t, b]:
                o, h, lo, c, v = (
                    float(a[t, b]) for a in (panel.open, panel.high, panel.low, panel.close, panel.volume)
                )
                out.append(Candle(exchange, s, "1h", int(ts), o, h, lo, c, v))
    return out


def reference(panel, net: HopeNet, exchange: str = "binance", model_name: str = "hope") -> dict[tuple, Signal]:
    """The replay path: features over the whole panel, run_stream, the feed rule's weights, signals_frame."""
    fp = build_features(panel)
    model = Hope(net.cfg, HopeNet(net.cfg))
    model.net.load_state_dict(net.state_dict())
    model.reset(len(panel.symbols))
    res = run_stream(model, fp, chunk=8)
    w = feed_weights(fp, res.preds)
    sigs = frame_to_signals(
        signals_frame(model_name, exchange, fp.symbols, fp.times, res.preds, fp.sigma, fp.mask, weights=w)
    )
    return {s.natural_key(): s for s in sigs}


def fresh_model(net: HopeNet) -> Hope:
    model = Hope(net.cfg, HopeNet(net.cfg))
    model.net.load_state_dict(net.state_dict())
    return model


def assert_same(got: dict[tuple, Signal], want: dict[tuple, Signal]) -> None:
    assert set(got) == set(want), (len(got), len(want), sorted(set(want) ^ set(got))[:3])
    for k, w in want.items():
        g = got[k]
        for f in ("ret_1h", "ret_24h", "vol_24h", "confidence"):
            assert abs(getattr(g, f) - getattr(w, f)) <= 1e-5 * (1 + abs(getattr(w, f))), (k, f, g, w)
        assert (g.weight is None) == (w.weight is None), (k, g, w)
        if w.weight is not None:
            assert abs(g.weight - w.weight) <= 1e-5 * (1 + abs(w.weight)), (k, g, w)
            if abs(abs(w.weight) - NEUTRAL_WEIGHT) > 1e-5:
                assert g.direction == w.direction, (k, g, w)


def bus_signals(bus: EmbeddedBus) -> list[tuple[bytes, Signal]]:
    return [(raw, decode(raw)) for raw in bus.log("signals")]


def make_service(bus, net, tmp_path: Path, **kw) -> LearnerService:
    opts = dict(
        checkpoint_every=24, keep_checkpoints=3, wait_s=3600.0, lake=Lake(tmp_path / "lake"), positions=feed_rule()
    )
    opts.update(kw)
    return LearnerService(bus, fresh_model(net), SYMBOLS, "binance", "1h", "g", tmp_path / "ckpt", **opts)


# ----------------------------------------------------------------------------- (a) embedded bus
def test_live_path_equals_replay_path(panel, net, tmp_path):
    want = reference(panel, net)
    assert len(want) > 400  # 2 symbols x (480 bars - the 168-bar warm-up)
    bus = EmbeddedBus(partitions=8)
    bus.publish_many(candles(panel))
    svc = make_service(bus, net, tmp_path)
    n = svc.run(idle_exit_s=0.0, poll_s=0.01)
    assert n == len(panel.times)
    got = bus_signals(bus)
    assert len(got) == len(want)  # one signal per (bar, present symbol), none twice
    assert_same({s.natural_key(): s for _, s in got}, want)
    sides = {s.direction for _, s in got}
    assert sides - {"neutral"} and max(abs(s.weight) for _, s in got) > 10 * NEUTRAL_WEIGHT  # it takes positions
    lake = Lake(tmp_path / "lake").read("signal")
    assert lake.height == len(want) and lake["weight"].is_not_null().all()
    # offsets were committed with the checkpoint: a new member of the group has nothing left to read
    assert bus.consumer(["market.candles"], "g").poll() == []
    assert len(svc.checkpoints()) == 3  # keep_checkpoints newest


def test_gaps_and_late_candles_are_masked_not_filled(panel, net, tmp_path):
    """ETH misses 5 bars; the service processes them masked (a later ETH bar proves the gap), and a
    late duplicate of an already processed bar changes nothing it published."""
    cut = panel.slice(0, 260)
    cut = dataclasses.replace(cut, **{f: getattr(cut, f).copy() for f in ("open", "high", "low", "close", "volume")})
    cut.present = cut.present.copy()
    gap = slice(200, 205)
    for f in ("open", "high", "low", "close", "volume"):
        getattr(cut, f)[gap, 1] = np.nan
    cut.present[gap, 1] = False
    want = reference(cut, net)
    bus = EmbeddedBus(partitions=2)
    cs = candles(cut)
    bus.publish_many(cs)
    bus.publish(cs[2 * 190])  # a duplicate of a processed bar, out of order
    svc = make_service(bus, net, tmp_path)
    svc.run(idle_exit_s=0.0, poll_s=0.01)
    got = {s.natural_key(): s for _, s in bus_signals(bus)}
    assert not [k for k in got if k[2] == "ETH/USDT" and cut.times[200] <= k[3] <= cut.times[204]]
    assert_same(got, want)


def test_stop_and_resume_from_checkpoint_seeks_to_checkpointed_offsets(panel, net, tmp_path):
    want = reference(panel, net)
    bus = EmbeddedBus(partitions=8)
    bus.publish_many(candles(panel))
    assert make_service(bus, net, tmp_path).run(max_bars=200, poll_s=0.01) == 200
    # the group's commit is moved past the checkpoint (as if another process committed more): the
    # checkpoint's offsets win, since they are the only ones consistent with the restored state
    c = bus.consumer(["market.candles"], "g")
    c.poll(max_records=10_000)
    c.commit()
    svc = make_service(bus, net, tmp_path)
    svc.run(idle_exit_s=0.0, poll_s=0.01)
    assert svc.restored_from is not None and svc.restored_from.name == "learn-g-000000200.pt"
    got = bus_signals(bus)
    assert len(got) == len(want)  # a clean stop checkpoints: nothing repeats
    assert_same({s.natural_key(): s for _, s in got}, want)


def test_crash_between_checkpoints_repeats_identical_signals_only(panel, net, tmp_path):
    """A crash 10 bars after a checkpoint: those 10 bars are re-published byte-identical, nothing is lost,
    the lake holds each natural key once, and the resumed forecasts equal the uninterrupted run."""
    want = reference(panel, net)
    bus = EmbeddedBus(partitions=8)
    bus.publish_many(candles(panel))
    svc = make_service(bus, net, tmp_path)
    svc.restore()
    svc.open_consumer()
    while svc.next_bar < 24 * 9 + 10:  # crash: no checkpoint, no commit after bar 216
        for m in svc.consumer.poll(timeout_s=0.01, max_records=50):
            svc.ingest(m)
        svc.process_ready(max_bars=24 * 9 + 10)
    svc.bus.flush()
    svc._flush_lake()
    del svc
    svc2 = make_service(bus, net, tmp_path)
    svc2.run(idle_exit_s=0.0, poll_s=0.01)
    assert svc2.restored_from.name == "learn-g-000000216.pt"
    got = bus_signals(bus)
    by_key: dict[tuple, set[bytes]] = {}
    for raw, s in got:
        by_key.setdefault(s.natural_key(), set()).add(raw)
    assert all(len(v) == 1 for v in by_key.values())  # repeats are byte-identical
    repeated = len(got) - len(by_key)
    assert repeated == 2 * 10  # exactly the bars after the checkpoint, for both symbols
    assert_same({s.natural_key(): s for _, s in got}, want)
    assert Lake(tmp_path / "lake").read("signal").height == len(want)


def test_hourly_onchain_features_reach_the_live_learner(panel, tmp_path):
    """With ``onchain=LakeHourly(lake)`` the live features carry the lake's hourly chain aggregates, the
    signals equal the replay path fed the same source, and the chain data changes the forecasts."""
    from continuum.schema import Block
    from learner.features import feature_names
    from learner.onchain import LakeHourly

    lake = Lake(tmp_path / "chainlake")
    rng = np.random.default_rng(0)
    blocks = []
    for i, ts in enumerate(panel.times.tolist()):  # one block every 20 minutes, busier on some hours
        for j in range(3):
            h = "0x" + f"{i * 3 + j:064x}"
            p = "0x" + f"{max(0, i * 3 + j - 1):064x}"
            blocks.append(
                Block(
                    "ethereum",
                    17_000_000 + i * 3 + j,
                    h,
                    p,
                    int(ts) + j * 1_200_000,
                    int(rng.integers(100, 400)),
                    int(rng.integers(8_000_000, 15_000_000)),
                    float(rng.uniform(10, 80)),
                    True,
                )
            )
    lake.append_events(blocks)
    src = LakeHourly(lake, "ethereum")
    names = feature_names(src)
    torch.manual_seed(3)
    cfg = HopeConfig(
        n_features=len(names), d_model=16, d_hidden=16, cms_hidden=16, cms_periods=(24, 48), cms_lr=(3e-3, 1e-3)
    )
    onet = HopeNet(cfg)
    fp = build_features(panel, onchain=src)
    assert fp.x.shape[2] == len(names) and np.abs(fp.x[200:, :, -len(src.names) :]).sum() > 0
    model = fresh_model(onet)
    model.reset(2)
    res = run_stream(model, fp, chunk=8)
    want = {
        s.natural_key(): s
        for s in frame_to_signals(signals_frame("hope", "binance", fp.symbols, fp.times, res.preds, fp.sigma, fp.mask))
    }
    assert all(s.weight is None and s.direction == "" for s in want.values())  # no rule handed in: no weights
    bus = EmbeddedBus(partitions=2)
    bus.publish_many(candles(panel))
    svc = LearnerService(
        bus,
        fresh_model(onet),
        SYMBOLS,
        "binance",
        "1h",
        "g",
        tmp_path / "ckpt",
        checkpoint_every=48,
        wait_s=3600.0,
        onchain=src,
    )
    svc.run(idle_exit_s=0.0, poll_s=0.01)
    got = {s.natural_key(): s for _, s in bus_signals(bus)}
    assert_same(got, want)
    # without the chain data the same net forecasts differently: the features really reach the model
    fp0 = build_features(panel, onchain=LakeHourly(Lake(tmp_path / "empty"), "ethereum"))
    m0 = fresh_model(onet)
    m0.reset(2)
    assert not np.allclose(run_stream(m0, fp0, chunk=8).preds[300:], res.preds[300:], equal_nan=True)


# ----------------------------------------------------------------------------- (b) real Kafka
def _service_cmd(tag: str, group: str, pretrained: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "commands.cli",
        "learn",
        "--symbols",
        ",".join(SYMBOLS),
        "--exchange",
        tag,
        "--group",
        group,
        "--pretrained",
        str(pretrained),
        "--checkpoint-every",
        "24",
        "--wait",
        "30",
        "-v",
        *extra,
    ]


@pytest.mark.integration
def test_kafka_service_survives_sigkill_without_losing_or_duplicating_signals(kafka_broker, panel, net, tmp_path):
    from continuum.kafka_bus import KafkaBus
    from tests.kafka.kafka_helpers import PARTITIONS, make_config, process_env

    tag = "t" + uuid.uuid4().hex[:10]
    group = f"learn-{tag}"
    cut = panel.slice(0, 360)
    want = reference(cut, net, exchange=tag)
    pre = tmp_path / "hope.pt"
    save_pretrained(pre, net, {"test": True})
    cfg = make_config(kafka_broker)
    bus = KafkaBus(cfg, partitions=PARTITIONS)
    cs = candles(cut, tag)
    bus.publish_many(cs[:300])
    bad = b'{"kind":"candle","v":1,"exchange":"' + tag.encode() + b'","symbol":"BTC/USDT","ts":"soon"}'
    bus.publish_raw("market.candles", f"{tag}:BTC/USDT", bad)
    bus.publish_many(cs[300:])
    bus.flush()

    env = process_env(kafka_broker, tmp_path)
    # first run: killed with SIGKILL once it has gone 10 bars past the checkpoint at bar 240
    p = subprocess.Popen(
        _service_cmd(tag, group, pre), cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines = []
    deadline = time.monotonic() + 90
    try:
        for line in p.stderr:
            lines.append(line)
            if line.startswith("continuum learn: bar 250 "):
                os.killpg(p.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL, "".join(lines[-20:])
    assert not any("UNTRAINED" in ln for ln in lines)  # --pretrained was used
    # second run: resumes from the newest checkpoint and stops once it is idle
    r = subprocess.run(
        _service_cmd(tag, group, pre, "--idle-exit", "4"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "restored" in r.stderr and "seeking" in r.stderr, r.stderr[-3000:]

    reader = bus.consumer(["signals"], f"check-{tag}")
    raw_by_key: dict[tuple, set[bytes]] = {}
    last: dict[tuple, Signal] = {}
    n_total = 0
    deadline = time.monotonic() + 30
    while len(last) < len(want) and time.monotonic() < deadline:
        for m in reader.poll(timeout_s=0.5):
            if m.key.startswith(tag):
                n_total += 1
                raw_by_key.setdefault(m.event.natural_key(), set()).add(encode(m.event))
                last[m.event.natural_key()] = m.event  # later = the restarted process's forecast
    for m in reader.poll(timeout_s=1.0):  # anything still behind
        if m.key.startswith(tag):
            n_total += 1
            raw_by_key.setdefault(m.event.natural_key(), set()).add(encode(m.event))
            last[m.event.natural_key()] = m.event
    reader.close()
    assert_same(last, want)  # every bar once after dedup; the restarted forecasts = uninterrupted run
    assert all(len(v) == 1 for v in raw_by_key.values())  # a repeated signal is the identical signal
    assert 0 < n_total - len(want) <= 2 * 24  # repeats only from the bars after the last checkpoint
    lake = Lake(tmp_path / "lake").read("signal")
    assert lake.height == len(want)
    # the malformed candle went to the dead letters, with its bytes, and the stream went on
    recs = [json.loads(body) for body in _deadletter_bodies(kafka_broker.bootstrap, tag)]
    assert any(r["source_topic"] == "market.candles" and '"ts":"soon"' in r["raw"] for r in recs)
    bus.close()


def _deadletter_bodies(bootstrap: str, tag: str) -> list[bytes]:
    """Dead letters are raw JSON records, not events: read them with a plain kafka-python consumer."""
    from kafka import KafkaConsumer

    kc = KafkaConsumer("deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    out: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(tag.encode() in b for b in out):
        for records in kc.poll(timeout_ms=500).values():
            out.extend(r.value for r in records)
    kc.close()
    return out
