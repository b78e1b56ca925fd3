"""Chain ingest throughput: blocks/s and logs/s from anvil over HTTP, and decoding throughput on mainnet data.

Busy scenario: Uniswap V2 + OpenZeppelin contracts from npm bytecode, then ``--rounds`` rounds of an ETH
transfer, a token transfer and two swaps (one block per transaction, anvil automine). Measured: the live
follower catching up from block 0 (one ``eth_getBlockByNumber`` + ``eth_getLogs(blockHash)`` per block), and
``backfill`` (batched ``eth_getLogs`` + JSON-RPC batches), both writing to a fresh lake; then pure decoding of the
ethereum-etl export of mainnet blocks 17173049-17173050 (680 logs), repeated.

    python bench/chain_ingest.py [--rounds 60] [--out bench/results/chain_ingest.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from continuum.lake import Lake  # noqa: E402
from ingest.chain import ChainFollower, EtlMetadata, Rpc, backfill, decode_log, etl_log, read_jsonl  # noqa: E402
from tests.services.anvil import Scenario, anvil  # noqa: E402

GOLDEN = REPO / "tests" / "data" / "ethereum_etl_mainnet_samples" / "blocks_17173049_17173050"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--decode-repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "chain_ingest.json")
    a = p.parse_args()
    res: dict = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"}
    with anvil() as node, tempfile.TemporaryDirectory() as tmp:
        s = Scenario(node.url).deploy()
        t = time.perf_counter()
        s.activity(a.rounds)
        res["scenario_build_s"] = round(time.perf_counter() - t, 2)
        rpc = Rpc(node.url)
        head = rpc.head()
        lake = Lake(Path(tmp) / "follow")
        f = ChainFollower(rpc, lake=lake, confirmations=12, from_block=0, max_blocks_per_step=10_000)
        t = time.perf_counter()
        f.step()
        dt = time.perf_counter() - t
        n_tr = lake.read("transfer", chain="ethereum").height
        n_sw = lake.read("swap", chain="ethereum").height
        res["follower"] = {
            "blocks": head + 1, "transfers": n_tr, "swaps": n_sw, "seconds": round(dt, 3),
            "blocks_per_s": round((head + 1) / dt, 1), "events_per_s": round((head + 1 + n_tr + n_sw) / dt, 1),
        }  # fmt: skip
        t = time.perf_counter()
        st = backfill(rpc, 0, head, lake=Lake(Path(tmp) / "backfill"), batch_blocks=200)
        dt = time.perf_counter() - t
        res["backfill"] = {
            "blocks": st.blocks, "logs": st.logs, "events": st.events, "log_queries": st.log_queries,
            "seconds": round(dt, 3), "blocks_per_s": round(st.blocks / dt, 1), "logs_per_s": round(st.logs / dt, 1),
        }  # fmt: skip
        rpc.close()
    logs = read_jsonl(GOLDEN / "logs.jsonl")
    meta = EtlMetadata(read_jsonl(GOLDEN / "token_transfers.jsonl"))
    rows = [(etl_log(r), int(r["block_timestamp"]) * 1000) for r in logs]
    t = time.perf_counter()
    n_ev = 0
    for _ in range(a.decode_repeats):
        n_ev += sum(decode_log(lg, "ethereum", ts, meta) is not None for lg, ts in rows)
    dt = time.perf_counter() - t
    res["decode_golden"] = {
        "logs": len(rows) * a.decode_repeats, "events": n_ev, "seconds": round(dt, 3),
        "logs_per_s": round(len(rows) * a.decode_repeats / dt, 0),
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
