"""Scale-out on the real broker: three `continuum learn --partitioned` members share the candle partitions.

16 streams (the 8 bundled Binance symbols over May 2022, and 8 more named ``<BASE>X/USDT`` carrying the same
symbols' bars of May 2021) are published bar by bar while three member processes of one group run; one of
them is killed with SIGKILL mid-stream. Its partitions move to the survivors, which restore each one from
its newest checkpoint in the shared store and seek to the checkpoint's offset. After de-duplication on the
natural key the ``signals`` topic equals an uninterrupted run of one member over all partitions: no signal
lost, none different, and a repeated signal is byte-identical. One member serves metrics, scraped over HTTP.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from continuum.bus import EmbeddedBus, partition_for
from continuum.config import BUNDLED_DATA
from continuum.kafka_bus import KafkaBus
from continuum.schema import Candle, decode, encode
from ingest.replay import load_panel
from learner.checkpoint import save_pretrained
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.service import PartitionedLearner
from strategies.positions import feed_rule
from tests.kafka.kafka_helpers import PARTITIONS, make_config, process_env

pytestmark = pytest.mark.integration

BARS = 360
SERVICE = dict(timeframe="1h", checkpoint_every=24, keep_checkpoints=3, wait_s=600.0)


def _streams(exchange: str) -> list[list[Candle]]:
    """Candles bar by bar: 16 streams on the grid of May 2022."""
    a = load_panel(BUNDLED_DATA, None, "1h", datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 31, tzinfo=UTC))
    b = load_panel(BUNDLED_DATA, None, "1h", datetime(2021, 5, 1, tzinfo=UTC), datetime(2021, 5, 31, tzinfo=UTC))
    bars = []
    for t in range(BARS):
        row = []
        for p, suffix in ((a, ""), (b, "X")):
            for j, s in enumerate(p.symbols):
                if p.present[t, j]:
                    vals = (float(v[t, j]) for v in (p.open, p.high, p.low, p.close, p.volume))
                    sym = s.replace("/", f"{suffix}/")
                    row.append(Candle(exchange, sym, "1h", int(a.times[t]), *vals))
        bars.append(row)
    return bars


def _symbols(bars: list[list[Candle]]) -> list[str]:
    return sorted({c.symbol for row in bars for c in row})


def _net() -> HopeNet:
    torch.manual_seed(11)
    return HopeNet(HopeConfig(d_model=16, d_hidden=16, cms_hidden=16, cms_periods=(24, 48), cms_lr=(3e-3, 1e-3)))


def _reference(bars, net: HopeNet, exchange: str, tmp: Path) -> dict[tuple, bytes]:
    """One member over every partition, uninterrupted, on the embedded bus (same partitioning)."""
    bus = EmbeddedBus(partitions=PARTITIONS)
    for row in bars:
        bus.publish_many(row)
    net.eval()
    member = PartitionedLearner(
        bus, lambda: Hope(net.cfg, _copy(net)), _symbols(bars), exchange, group="ref", make_positions=feed_rule,
        checkpoint_dir=tmp / "ref-ckpt", **SERVICE,
    )  # fmt: skip
    member.run(idle_exit_s=0.0, poll_s=0.01)
    return {decode(raw).natural_key(): raw for raw in bus.log("signals")}


def _copy(net: HopeNet) -> HopeNet:
    c = HopeNet(net.cfg)
    c.load_state_dict(net.state_dict())
    return c


def _tag(symbols: list[str]) -> str:
    """An exchange name under which every partition holds at least three of the streams."""
    while True:
        tag = "t" + uuid.uuid4().hex[:10]
        counts = [0] * PARTITIONS
        for s in symbols:
            counts[partition_for(f"{tag}:{s}", PARTITIONS)] += 1
        if min(counts) >= 3:
            return tag


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Member:
    """A `continuum learn --partitioned` process whose stderr is read by a thread."""

    def __init__(self, name: str, cmd: list[str], env: dict, cwd: Path):
        self.name = name
        self.p = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.running: list[int] = []
        self.max_bar = -1
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        for line in self.p.stderr:
            self.lines.append(line)
            m = re.search(r"running \[([\d, ]*)\]", line)
            if m:
                self.running = [int(x) for x in m.group(1).split(",") if x.strip()]
            m = re.match(r"continuum learn: bar (\d+) ", line)
            if m:
                self.max_bar = max(self.max_bar, int(m.group(1)))

    def text(self) -> str:
        return "".join(self.lines)


def _wait(cond, timeout_s: float, why, members) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {m.name}\n" + "".join(m.lines[-15:]) for m in members)
            raise AssertionError(f"{why} not reached in {timeout_s}s\n{logs}")
        time.sleep(0.1)


def test_three_members_share_partitions_and_a_killed_members_state_moves(kafka_broker, tmp_path):
    bars0 = _streams("x")
    symbols = _symbols(bars0)
    assert len(symbols) == 16
    tag = _tag(symbols)
    bars = _streams(tag)
    net = _net()
    want = _reference(bars, net, tag, tmp_path)
    assert len(want) > 16 * (BARS - 200)
    pre = tmp_path / "hope.pt"
    save_pretrained(pre, net, {"test": True})
    group, prom = f"learn-{tag}", _port()
    env = process_env(kafka_broker, tmp_path, CONTINUUM_LEARNER__KEEP_CHECKPOINTS="3")  # ckpt: the shared store
    cmd = [
        sys.executable, "-m", "commands.cli", "learn", "--partitioned", "--symbols", ",".join(symbols),
        "--exchange", tag, "--group", group, "--pretrained", str(pre), "--checkpoint-every", "24",
        "--wait", "600", "--idle-exit", "12", "--no-lake", "-v",
    ]  # fmt: skip
    members = [Member("m0", [*cmd, "--metrics-port", str(prom)], env, tmp_path)]
    _wait(lambda: members[0].running, 60, "first member assigned", members)
    members += [Member(f"m{i}", cmd, env, tmp_path) for i in (1, 2)]
    # all three hold partitions (4 partitions: 2 + 1 + 1)
    _wait(lambda: all(m.running for m in members) and sum(len(m.running) for m in members) == 4, 90,
          "three members sharing the partitions", members)  # fmt: skip

    bus = KafkaBus(make_config(kafka_broker), partitions=PARTITIONS)
    victim = members[1]
    moved: list[int] = []
    at_kill: list[int] = []

    def kill_mid_stream() -> None:  # once the victim is 150 bars into its partitions
        while victim.max_bar < 150 and victim.p.poll() is None:
            time.sleep(0.02)
        moved.extend(victim.running)
        at_kill.append(victim.max_bar)
        os.killpg(victim.p.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_stream, daemon=True)
    killer.start()
    try:
        for row in bars:  # about 25 bars a second
            bus.publish_many(row)
            bus.flush()
            time.sleep(0.04)
        killer.join(120)
        assert victim.p.wait(10) == -signal.SIGKILL, victim.text()[-3000:]
        assert moved and at_kill[0] < BARS - 60, at_kill  # mid-stream: most of its bars were still to come
        survivors = [m for m in members if m is not victim]
        _wait(lambda: all(p in sum((m.running for m in survivors), []) for p in moved), 60,
              "the killed member's partitions moved", members)  # fmt: skip
        # metrics of a survivor (m0) over real HTTP while it runs: lag per partition, bars, dead letters
        text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert fams["continuum_bars"].samples[0].value > 0
        assert {s.labels["topic"] for s in fams["continuum_consumer_lag"].samples} == {"market.candles"}
        for m in survivors:
            assert m.p.wait(180) == 0, m.text()[-3000:]
    finally:
        for m in members:
            if m.p.poll() is None:
                os.killpg(m.p.pid, signal.SIGKILL)
                m.p.wait()
    after = "".join(m.text() for m in survivors)
    for p in moved:  # each was restored from the victim's last checkpoint, not started afresh
        assert re.search(rf"partition {p}: restored bar \d+, seeking to offset \d+", after), after[-3000:]

    reader = bus.consumer(["signals"], f"check-{tag}")
    got: dict[tuple, set[bytes]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(got) < len(want):
        for msg in reader.poll(timeout_s=0.5):
            if msg.key.startswith(tag):
                got.setdefault(msg.event.natural_key(), set()).add(encode(msg.event))
    for msg in reader.poll(timeout_s=2.0):
        if msg.key.startswith(tag):
            got.setdefault(msg.event.natural_key(), set()).add(encode(msg.event))
    reader.close()
    bus.close()
    assert set(got) == set(want), (len(got), len(want))  # none lost, none extra
    assert all(len(v) == 1 for v in got.values())  # a repeat is the identical signal
    different = [k for k, v in got.items() if next(iter(v)) != want[k]]
    assert not different, different[:3]  # equal, byte for byte, to the uninterrupted single member
