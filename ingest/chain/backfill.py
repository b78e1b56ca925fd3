"""Onchain history into the lake: ``continuum backfill chain --rpc URL --from-block A --to-block B``.

Logs come from batched ``eth_getLogs`` over block ranges (one query per ``batch_blocks`` blocks, filtered to the
Transfer and Swap topics); blocks and the receipts of value-carrying transactions come in JSON-RPC batches.
Public and hosted nodes cap ``eth_getLogs`` (by block span, result count or response size) with error
messages that differ per provider; any error on a range wider than one block is taken as "too large", the
range is split in half and both halves are retried, recursively. A single block that still fails is a real
error and is raised.

Consistency: each log's ``blockHash`` must match the hash of the block fetched for that number. A mismatch
means the chain reorganised between the two queries; the chunk is fetched again (a few times) so the lake
never mixes forks. Blocks deeper than ``confirmations`` below the head are stored ``final=True``.

Resumable and idempotent: blocks of the range already in the lake are skipped, and lake appends deduplicate on
natural keys, so re-running a range leaves the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from continuum.lake import Lake
from continuum.schema import Event
from ingest.chain.blocks import RpcMetadata, block_events
from ingest.chain.decode import log_filter, qty
from ingest.chain.rpc import Rpc, RpcError
from ingest.chain.store import Sink

log = logging.getLogger(__name__)


@dataclass
class BackfillStats:
    """Counts for the summary line and the benchmark."""

    blocks: int = 0
    logs: int = 0
    events: int = 0
    log_queries: int = 0
    splits: int = 0
    refetches: int = 0
    skipped: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def fetch_logs(
    rpc: Rpc,
    start: int,
    end: int,
    topics: list | None = None,
    addresses: list[str] | None = None,
    stats: BackfillStats | None = None,
) -> list[dict]:
    """All logs in ``[start, end]`` matching the filter; halves the range whenever the node refuses it."""
    stats = stats or BackfillStats()
    out: list[dict] = []
    todo = [(start, end)]
    while todo:
        a, b = todo.pop()
        stats.log_queries += 1
        try:
            got = rpc.call("eth_getLogs", [log_filter(addresses, topics, fromBlock=hex(a), toBlock=hex(b))])
        except RpcError as e:
            if a == b:
                raise
            mid = (a + b) // 2
            stats.splits += 1
            log.debug("eth_getLogs %d..%d refused (%s); splitting at %d", a, b, e.message, mid)
            todo += [(mid + 1, b), (a, mid)]  # lower half popped first: output stays in block order
            continue
        out += got
    return out


def backfill(
    rpc: Rpc,
    start: int,
    end: int,
    chain: str = "ethereum",
    lake: Lake | None = None,
    publish: Callable[[Event], None] | None = None,
    confirmations: int = 12,
    batch_blocks: int = 200,
    addresses: list[str] | None = None,
    meta: RpcMetadata | None = None,
    progress: Callable[[int], None] | None = None,
) -> BackfillStats:
    """Ingest blocks ``start..end`` (inclusive) into the lake and/or onto the bus. See the module docstring."""
    if end < start:
        raise ValueError(f"to-block {end} is before from-block {start}")
    stats = BackfillStats()
    meta = meta or RpcMetadata(rpc)
    sink = Sink(lake, publish)
    have: set[int] = set()
    if lake is not None:
        lf = lake.scan("block", chain=chain)
        if lf.collect_schema().names():
            have = set(lf.filter(pl.col("number").is_between(start, end)).select("number").collect()["number"])
    head = rpc.head()
    a = start
    while a <= end:
        b = min(a + batch_blocks - 1, end)
        todo = [n for n in range(a, b + 1) if n not in have]
        stats.skipped += (b - a + 1) - len(todo)
        if todo:
            events, nlogs = _chunk(
                rpc, todo[0], todo[-1], set(todo), chain, head, confirmations, addresses, meta, stats
            )
            stats.blocks += len(todo)
            stats.logs += nlogs
            stats.events += len(events)
            for e in events:
                stats.by_kind[e.KIND] = stats.by_kind.get(e.KIND, 0) + 1
            sink.write(events)
        if progress is not None:
            progress(b - a + 1)
        a = b + 1
    return stats


def _chunk(
    rpc: Rpc,
    a: int,
    b: int,
    wanted: set[int],
    chain: str,
    head: int,
    confirmations: int,
    addresses: list[str] | None,
    meta: RpcMetadata,
    stats: BackfillStats,
    attempts: int = 3,
) -> tuple[list[Event], int]:
    for attempt in range(attempts):
        logs = fetch_logs(rpc, a, b, addresses=addresses, stats=stats)
        blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in range(a, b + 1) if n in wanted])
        if any(blk is None for blk in blocks):
            raise RpcError("eth_getBlockByNumber", None, f"the node has no block in {a}..{b} (beyond its head?)")
        hashes = {qty(blk["number"]): blk["hash"].lower() for blk in blocks}
        by_block: dict[int, list[dict]] = {}
        consistent = True
        for lg in logs:
            n = qty(lg["blockNumber"])
            if n not in wanted:
                continue
            if lg["blockHash"].lower() != hashes[n]:
                consistent = False
                break
            by_block.setdefault(n, []).append(lg)
        if not consistent:
            stats.refetches += 1
            log.warning("chain reorganised while reading %d..%d; fetching again (%d)", a, b, attempt + 1)
            continue
        events: list[Event] = []
        for blk in blocks:
            n = qty(blk["number"])
            events += block_events(rpc, blk, by_block.get(n, []), chain, meta, final=head - n >= confirmations)
        return events, sum(len(v) for v in by_block.values())
    raise RpcError("eth_getLogs", None, f"blocks {a}..{b} kept changing while being read (reorg storm)")
