"""``continuum stream chain --metrics-port``: a real follower of a local node (anvil) as a process, scraped over real
HTTP; the events it counts as published are the blocks and transfers that reached the lake."""

from __future__ import annotations

import pytest

from continuum.lake import Lake
from tests.services.cli import cli_env, cli_process, terminate
from tests.services.prometheus import free_port, scrape_until

pytestmark = pytest.mark.integration


def test_stream_chain_counts_what_it_publishes(scenario, node, tmp_path):
    head = scenario.w3.eth.block_number
    port = free_port()
    env = cli_env(CONTINUUM_LAKE__ROOT=str(tmp_path / "lake"), CONTINUUM_CHAIN__CONFIRMATIONS="0")
    args = ["stream", "chain", "--rpc", node.url, "--from-block", "0", "--poll", "0.1", "--metrics-port", str(port)]
    out = lambda topic: ("continuum_events_total", (("direction", "out"), ("topic", topic)))  # noqa: E731
    with cli_process(args, tmp_path, env) as p:
        m = scrape_until(p, port, lambda m: m.get(out("chain.blocks"), 0) >= head + 1)
        _, err = terminate(p)
    assert p.returncode == 0, err[-2000:]
    lake = Lake(tmp_path / "lake")
    transfers = lake.read("transfer")
    assert transfers.height > 0 and m[out("chain.transfers")] == transfers.height
    assert m[out("chain.blocks")] == lake.read("block").height == head + 1
    assert m[("continuum_reconnects_total", (("source", "chain"),))] == 0
