"""`continuum live` on Kafka: the roles run as separate processes (source, learner, dashboard) under one
supervisor; SIGTERM stops them in order, the learner checkpoints, and no process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from continuum.lake import Lake
from learner.service import checkpoints_of
from tests.kafka.kafka_helpers import process_env
from tests.learner.test_live import _port, _session_pids

pytestmark = pytest.mark.integration


def test_live_on_kafka_runs_each_role_as_a_process_and_stops_them(kafka_broker, tmp_path):
    tag = "t" + uuid.uuid4().hex[:10]
    env = process_env(kafka_broker, tmp_path)
    argv = [
        "live", "--replay", "--speed", "0", "--exchange", tag, "--group", f"live-{tag}",
        "--symbols", "BTC/USDT,ETH/USDT", "--start", "2024-03-01", "--end", "2024-03-11",
        "--dashboard-port", str(_port()),
    ]  # fmt: skip
    shown = subprocess.run(
        [sys.executable, "-m", "commands.cli", *argv, "--print"], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    for role in ("source", "learner", "dashboard"):
        assert f"--role {role}" in shown.stdout
    p = subprocess.Popen(
        [sys.executable, "-m", "commands.cli", *argv], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        want = 2 * (240 - 168)  # 10 days of 2 symbols, after the 168-bar warm-up
        while time.monotonic() < deadline:
            lake = Lake(tmp_path / "lake")
            if (tmp_path / "lake").exists() and lake.read("signal").height >= want:
                break
            assert p.poll() is None, p.stderr.read()[-3000:]
            time.sleep(0.5)
        assert Lake(tmp_path / "lake").read("signal").height == want
        assert len([q for q in _session_pids(p.pid) if q != p.pid]) >= 3  # source, learner, dashboard (+streamlit)
        os.kill(p.pid, signal.SIGTERM)
        rc = p.wait(120)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert rc == 0, err[-3000:]
    deadline = time.monotonic() + 10
    while _session_pids(p.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_pids(p.pid) == [], err[-3000:]
    assert checkpoints_of(tmp_path / "ckpt", f"live-{tag}")[-1].name.endswith("000000240.pt"), err[-3000:]
