"""`continuum live` on the embedded bus, as a user runs it: a real process, the real dashboard, real HTTP.

The bundled history is replayed at 36,000x (ten bars a second) through the learner from the shipped
meta-weights; the test waits until the Streamlit dashboard answers and the learner is past bar 200, scrapes
the Prometheus endpoint over HTTP and parses it, then sends SIGTERM: the process checkpoints and exits 0,
and no process of its session (the Streamlit child included) is left. A restart resumes after the
checkpointed bar, and the lake then equals an uninterrupted run: every bar's signals once, none different.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from continuum.lake import Lake
from learner.service import checkpoints_of

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BARS = 480  # 2024-03-01 .. 2024-03-21, 2 symbols


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout's code, in every child
        "OMP_NUM_THREADS": "1",
        "CONTINUUM_LAKE__ROOT": str(tmp / "lake"),
        "CONTINUUM_LEARNER__CHECKPOINT_DIR": str(tmp / "ckpt"),
    }


def _live(*extra: str) -> list[str]:
    return [
        sys.executable, "-m", "commands.cli", "live", "--replay",
        "--symbols", "BTC/USDT,ETH/USDT", "--start", "2024-03-01", "--end", "2024-03-21",
        "--checkpoint-every", "24", "-v", *extra,
    ]  # fmt: skip


def _session_pids(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (the live process was started as its leader)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
                out.append(int(d.name))
    return out


def _metrics(port: int) -> dict[str, dict[tuple, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _lake_signals(root: Path) -> pl.DataFrame:
    return Lake(root).read("signal").sort("symbol", "ts")


def test_live_replay_serves_dashboard_metrics_and_stops_cleanly_then_resumes(tmp_path):
    a, ref = tmp_path / "a", tmp_path / "ref"
    a.mkdir(), ref.mkdir()
    dash, prom = _port(), _port()
    p = subprocess.Popen(
        _live("--speed", "36000", "--dashboard-port", str(dash), "--metrics-port", str(prom)),
        cwd=a, env=_env(a), stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        bar, healthy = -1, False
        for line in p.stderr:
            lines.append(line)
            if line.startswith("continuum learn: bar "):
                bar = int(line.split()[3])
            if not healthy:
                with contextlib.suppress(OSError):
                    healthy = urllib.request.urlopen(f"http://127.0.0.1:{dash}/_stcore/health", timeout=1).status == 200
            if healthy and bar >= 200:
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
        assert healthy and 200 <= bar < BARS - 24, "".join(lines[-20:])
        m = _metrics(prom)
        assert m["continuum_bars_total"][()] >= 200
        assert m["continuum_events_total"][(("direction", "in"), ("topic", "market.candles"))] >= 400
        assert m["continuum_events_total"][(("direction", "out"), ("topic", "market.candles"))] >= 400
        assert m["continuum_events_total"][(("direction", "out"), ("topic", "signals"))] > 0
        assert m["continuum_predict_seconds_count"][()] >= 200
        assert 0 <= m["continuum_checkpoint_age_seconds"][()] < 60
        assert m["continuum_deadletters_total"][()] == 0
        assert any(k for k in m["continuum_consumer_lag"])
        os.kill(p.pid, signal.SIGTERM)
        rest = p.stderr.read()
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    log = "".join(lines) + rest
    assert rc == 0, log[-3000:]
    assert "SIGTERM: stopping" in rest and "continuum live: stopped" in rest, rest[-2000:]
    deadline = time.monotonic() + 10
    while _session_pids(p.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_pids(p.pid) == [], "children left behind (the Streamlit server?)"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{dash}/_stcore/health", timeout=1)
    # the stop checkpointed the bar it had reached, after bar 200
    stopped_at = int(checkpoints_of(a / "ckpt", "live")[-1].stem.rsplit("-", 1)[1])
    assert stopped_at > 200 and f"checkpoint bar={stopped_at} " in rest
    first = _lake_signals(a / "lake")
    assert first["ts"].n_unique() == stopped_at - 168  # the signals of every bar processed (after the warm-up)

    # restart: resumes after the checkpointed bar and finishes the replay
    r = subprocess.run(
        _live("--speed", "0", "--no-dashboard", "--max-bars", str(BARS - stopped_at)),
        cwd=a, env=_env(a), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"restored learn-live-{stopped_at:09d}.pt" in r.stderr, r.stderr[-3000:]
    # the reference: one uninterrupted run over the same bars
    r = subprocess.run(
        _live("--speed", "0", "--no-dashboard", "--max-bars", str(BARS)),
        cwd=ref, env=_env(ref), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got, want = _lake_signals(a / "lake"), _lake_signals(ref / "lake")
    assert want.height == 2 * (BARS - 168)
    assert got.height == want.height  # none lost, none twice (the lake keeps one row per natural key)
    assert got.equals(want)  # none different
