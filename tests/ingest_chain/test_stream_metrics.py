"""``continuum stream chain --metrics-port``: a real follower of a local node (anvil) as a process, scraped over real
HTTP; the events it counts as published are the blocks and transfers that reached the lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from continuum.lake import Lake
from tests.services.prometheus import free_port, scrape_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_stream_chain_counts_what_it_publishes(scenario, node, tmp_path):
    head = scenario.w3.eth.block_number
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUUM_")}
    env.update(PYTHONPATH=str(REPO), CONTINUUM_LAKE__ROOT=str(tmp_path / "lake"), CONTINUUM_CHAIN__CONFIRMATIONS="0")
    cmd = [sys.executable, "-m", "commands.cli", "stream", "chain", "--rpc", node.url, "--from-block", "0",
           "--poll", "0.1", "--metrics-port", str(port)]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = lambda topic: ("continuum_events_total", (("direction", "out"), ("topic", topic)))  # noqa: E731
    try:
        m = scrape_until(p, port, lambda m: m.get(out("chain.blocks"), 0) >= head + 1)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err[-2000:]
    lake = Lake(tmp_path / "lake")
    transfers = lake.read("transfer")
    assert transfers.height > 0 and m[out("chain.transfers")] == transfers.height
    assert m[out("chain.blocks")] == lake.read("block").height == head + 1
    assert m[("continuum_reconnects_total", (("source", "chain"),))] == 0
