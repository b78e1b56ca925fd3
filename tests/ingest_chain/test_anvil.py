"""The chain source against a real node: anvil with Uniswap V2 and OpenZeppelin bytecode from npm.

Each test starts its own anvil (well under a second) and compares the lake with what the scenario did or
with a fresh backfill of the canonical chain, never with the follower's own bookkeeping.
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest

from continuum.errors import UserError
from continuum.lake import Lake
from continuum.schema import Retraction
from ingest.chain import ChainFollower, Rpc, backfill, chain_view
from tests.services.anvil import RangeLimitProxy

pytestmark = pytest.mark.integration
E18 = 10**18


def _frame(lake: Lake, kind: str) -> pl.DataFrame:
    df = chain_view(lake, kind, "ethereum")
    key = ["number"] if kind == "block" else ["tx_hash", "log_index"]
    return df.drop("final", strict=False).sort(key) if df.height else df


def _canonical(url: str, tmp_path, head: int) -> Lake:
    """The canonical chain 0..head as an independent backfill sees it."""
    lake = Lake(tmp_path / "canonical")
    backfill(Rpc(url), 0, head, lake=lake, confirmations=0)
    return lake


def _assert_same(a: Lake, b: Lake) -> None:
    for kind in ("block", "transfer", "swap"):
        fa, fb = _frame(a, kind), _frame(b, kind)
        assert fa.height == fb.height, f"{kind}: {fa.height} rows vs {fb.height}"
        assert fa.equals(fb.select(fa.columns)), f"{kind} rows differ"


def test_scenario_is_ingested_completely(node, scenario, tmp_path):
    lake = Lake(tmp_path / "lake")
    f = ChainFollower(Rpc(node.url), lake=lake, confirmations=2, from_block=0)
    res = f.step()
    head = res.head
    assert res.emitted == list(range(head + 1))
    blocks = _frame(lake, "block")
    assert blocks["number"].to_list() == list(range(head + 1))
    tr = _frame(lake, "transfer")
    native = tr.filter(pl.col("log_index") == -1)
    for frm, to, wei in scenario.sent["eth"]:
        assert (
            native.filter(
                (pl.col("from_address") == frm) & (pl.col("to_address") == to) & (pl.col("raw_value") == str(wei))
            ).height
            == 1
        )
    tka = scenario.tka.address.lower()
    for token, _frm, to, amount in scenario.sent["token"]:
        row = tr.filter(
            (pl.col("token") == token) & (pl.col("to_address") == to) & (pl.col("raw_value") == str(amount))
        )
        assert row.height == 1 and row["symbol"][0] == "TKA" and row["value"][0] == amount / E18
    sw = _frame(lake, "swap")
    assert sw.height == len(scenario.sent["swap"])
    for pool, tin, tout, ain, aout in scenario.sent["swap"]:
        row = sw.filter((pl.col("pool") == pool) & (pl.col("token_in") == tin) & (pl.col("amount_in") == ain / E18))
        assert row.height == 1 and row["token_out"][0] == tout and row["amount_out"][0] == aout / E18
        assert row["dex"][0] == "uniswap_v2"
    assert tr.filter(pl.col("token") == tka).height >= 2 + len(scenario.sent["swap"])
    # every Transfer/Swap log the node has is in the lake (counted from receipts, not from the decoder)
    w3 = scenario.w3
    n_logs = 0
    for n in range(head + 1):
        for txh in w3.eth.get_block(n)["transactions"]:
            for lg in w3.eth.get_transaction_receipt(txh)["logs"]:
                t0 = lg["topics"][0].to_0x_hex()
                n_logs += t0 in ("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                                 "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822")  # fmt: skip
    assert tr.filter(pl.col("log_index") >= 0).height + sw.height == n_logs
    # provisional and final views
    final = chain_view(lake, "block", "ethereum", final_only=True)
    assert final["number"].max() == head - 2
    assert chain_view(lake, "transfer", "ethereum", final_only=True).height < tr.height


def test_reorg_retracts_orphans_and_lake_equals_canonical_chain(node, scenario, tmp_path):
    lake = Lake(tmp_path / "lake")
    published = []
    f = ChainFollower(Rpc(node.url), lake=lake, publish=published.append, confirmations=5, from_block=0)
    fork = node.rpc("evm_snapshot")
    base = f.step().head
    scenario.activity(2)  # the branch that will be orphaned: 8 blocks
    orphan_head = f.step().head
    orphan_hashes = set(_frame(lake, "block").filter(pl.col("number") > base)["hash"])
    assert node.rpc("evm_revert", [fork])
    scenario.eth_transfer(3, 4, 7 * E18)  # a different branch, longer than the orphaned one
    scenario.swap_tokens(33 * E18, a_to_b=False)
    scenario.mine(orphan_head - base)
    res = f.step()
    retracted = [e for e in published if isinstance(e, Retraction)]
    assert sorted(res.retracted) == list(range(base + 1, orphan_head + 1))
    assert {r.block_hash for r in retracted} == orphan_hashes
    assert not set(_frame(lake, "block")["hash"]) & orphan_hashes
    _assert_same(lake, _canonical(node.url, tmp_path, res.head))


def test_anvil_reorg_at_the_tip_is_detected_without_new_height(node, scenario, tmp_path):
    lake = Lake(tmp_path / "lake")
    f = ChainFollower(Rpc(node.url), lake=lake, confirmations=3, from_block=0)
    head = f.step().head
    old_tip = _frame(lake, "block")["hash"][-1]
    node.rpc("anvil_reorg", [2, []])  # replace the last 2 blocks with empty ones, same height
    res = f.step()
    assert res.head == head and sorted(res.retracted) == [head - 1, head]
    assert old_tip not in set(_frame(lake, "block")["hash"])
    _assert_same(lake, _canonical(node.url, tmp_path, head))


def test_restart_resumes_without_gap_or_duplicate(node, scenario, tmp_path):
    lake = Lake(tmp_path / "lake")
    rpc = Rpc(node.url)
    first = ChainFollower(rpc, lake=lake, confirmations=2, from_block=0)
    h1 = first.step().head
    scenario.activity(2)
    second = ChainFollower(rpc, lake=lake, confirmations=2, from_block=0)  # a restart: the lake wins
    assert second.next_block == h1 + 1
    res = second.step()
    assert res.emitted == list(range(h1 + 1, res.head + 1))
    blocks = _frame(lake, "block")["number"].to_list()
    assert blocks == list(range(res.head + 1))
    tr = _frame(lake, "transfer")
    assert tr.select("tx_hash", "log_index").is_duplicated().sum() == 0
    _assert_same(lake, _canonical(node.url, tmp_path, res.head))


def test_node_refusing_large_log_ranges_is_split(node, scenario, tmp_path):
    proxy = RangeLimitProxy(node.url, max_blocks=3)
    try:
        head = Rpc(node.url).head()
        lake = Lake(tmp_path / "lake")
        st = backfill(Rpc(proxy.url), 0, head, lake=lake, batch_blocks=50, confirmations=0)
        assert proxy.refused > 0 and st.splits == proxy.refused
        assert st.blocks == head + 1
        _assert_same(lake, _canonical(node.url, tmp_path, head))
        st2 = backfill(Rpc(proxy.url), 0, head, lake=lake, batch_blocks=50)  # resumable: nothing left to do
        assert st2.blocks == 0 and st2.skipped == head + 1
    finally:
        proxy.close()


def _wait_for(cond, timeout_s: float) -> bool:
    """Poll ``cond`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_websocket_new_heads_drive_the_follower(node, tmp_path):
    from tests.services.anvil import Scenario

    # Generous deadlines (a loaded CI machine can be slow), all far below the follower's polling fallback of an
    # hour: whatever the follower picks up within them, only a newHeads notification can have woken it for.
    wait_s, poll_s = 60.0, 3600.0
    lake = Lake(tmp_path / "lake")
    rpc = Rpc(node.ws_url)
    stop = threading.Event()
    try:
        f = ChainFollower(rpc, lake=lake, confirmations=0, from_block=0)
        t = threading.Thread(target=f.run, kwargs={"poll_s": poll_s, "stop": stop}, daemon=True)
        t.start()
        assert _wait_for(lambda: f.next_block == 1, wait_s), "the follower never read the genesis block"
        # The subscription is set up in the background, and a block mined before the node has it is never
        # announced. Do not assume it is up a moment after the thread started (under CPU load it is not): mine
        # empty blocks until one of them has woken the follower, so the subscription demonstrably works.
        deadline = time.monotonic() + wait_s
        while True:
            node.rpc("evm_mine")
            head = int(node.rpc("eth_blockNumber"), 16)
            if _wait_for(lambda h=head: f.next_block > h, 1.0):
                break
            assert time.monotonic() < deadline, f"no newHeads notification woke the follower in {wait_s:.0f}s"
        first = f.next_block
        s = Scenario(node.url)
        s.eth_transfer(0, 1, E18)
        s.eth_transfer(1, 2, E18)
        assert _wait_for(lambda: _frame(lake, "transfer").height >= 2 and f.next_block == first + 2, wait_s), (
            f"follower at block {f.next_block}, {_frame(lake, 'transfer').height} transfer(s) after {wait_s:.0f}s"
        )
        stop.set()
        rpc.wake()
        t.join(wait_s)
        assert not t.is_alive()
        assert f.next_block == first + 2
        tr = _frame(lake, "transfer")
        assert tr.height == 2 and sorted(tr["block_number"]) == [first, first + 1]
    finally:
        stop.set()
        rpc.close()


def test_bad_rpc_url_is_a_clear_error():
    with pytest.raises(UserError, match="cannot reach a JSON-RPC node"):
        Rpc("http://127.0.0.1:9")
    with pytest.raises(UserError, match="expected an http"):
        Rpc("127.0.0.1:8545")
