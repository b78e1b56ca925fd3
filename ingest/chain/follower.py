"""Following the head of an Ethereum JSON-RPC node, reorg-safe, onto the bus and into the lake.

Per block it emits the events of :func:`~ingest.chain.blocks.block_events`: a :class:`~continuum.schema.Block`,
its top-level native ETH transfers, its ERC-20 ``Transfer`` and Uniswap V2/V3 ``Swap`` logs.

Reorgs. Every new block's ``parentHash`` is checked against the hash this follower recorded for the block
below, and on every poll the recorded tip is checked against the node. On a mismatch the follower walks back
to the highest block whose recorded hash the node still agrees with (the common ancestor), emits a
:class:`~continuum.schema.Retraction` for each orphaned block (newest first; the lake drops the block's rows
at once, bus consumers drop what they derived from it) and then re-emits the canonical blocks from the
ancestor up. Logs are fetched with ``eth_getLogs({"blockHash": ...})``, so a block's logs always belong to
exactly the block whose header was checked.

Provisional and final. Blocks are emitted as soon as they are seen (``final=False``, the provisional view);
once ``confirmations`` blocks sit on top, the block is emitted again with ``final=True`` (the lake keeps one
row, now final). :func:`~ingest.chain.store.chain_view` reads either view from the lake. A reorg deeper than
``confirmations`` is still repaired (correctness first) and logged as a warning.

Resume. The lake is the follower's memory: on start it continues after the highest block stored for the
chain and reloads the recent block hashes it needs for the parent checks, so a restart neither skips nor
repeats a block.

Transport. ``http(s)://`` URLs are polled; ``ws(s)://`` URLs subscribe to ``newHeads`` and poll only as a
fallback (see :class:`~ingest.chain.rpc.Rpc`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from continuum.lake import Lake
from continuum.schema import Block, Event, Retraction
from ingest.chain.blocks import RpcMetadata, block_events
from ingest.chain.decode import log_filter
from ingest.chain.rpc import Rpc
from ingest.chain.store import Sink

log = logging.getLogger(__name__)
_BLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(Block))


@dataclass
class StepResult:
    """What one poll did: blocks emitted (by number), blocks retracted, blocks finalised, the node's head."""

    head: int
    emitted: list[int] = field(default_factory=list)
    retracted: list[int] = field(default_factory=list)
    finalized: list[int] = field(default_factory=list)


class ChainFollower:
    """Follows one chain: :meth:`step` does one poll; :meth:`run` loops. See the module docstring."""

    def __init__(
        self,
        rpc: Rpc,
        chain: str = "ethereum",
        lake: Lake | None = None,
        publish: Callable[[Event], None] | None = None,
        flush: Callable[[], None] | None = None,
        confirmations: int = 12,
        from_block: int | None = None,
        addresses: list[str] | None = None,
        window: int = 256,
        max_blocks_per_step: int = 100,
    ):
        self.rpc, self.chain, self.lake = rpc, chain, lake
        self.sink = Sink(lake, publish, flush)
        self.confirmations, self.window, self.max_blocks = (
            confirmations,
            max(window, confirmations + 2),
            max_blocks_per_step,
        )
        self.addresses = addresses
        self.meta = RpcMetadata(rpc)
        self._blocks: dict[int, Block] = {}  # recent canonical blocks we emitted, by number
        self._final_upto = -1
        self.reconnects = 0  # polls that failed on the network and were retried (a metric)
        self.next_block = self._resume(from_block)

    # ---------------------------------------------------------------- state
    def _resume(self, from_block: int | None) -> int:
        if self.lake is not None:
            lf = self.lake.scan("block", chain=self.chain)
            if lf.collect_schema().names():
                df = lf.sort("number").tail(self.window).collect()
                if df.height:
                    for r in df.iter_rows(named=True):
                        self._blocks[r["number"]] = Block(**{k: r[k] for k in _BLOCK_FIELDS if k in r})
                    finals = df.filter(pl.col("final"))["number"]
                    self._final_upto = int(finals.max()) if finals.len() else -1
                    last = int(df["number"].max())
                    if from_block is None or from_block <= last + 1:
                        return last + 1
                    self._blocks.clear()  # a jump forward: the stored tip is not our parent any more
        if from_block is not None:
            return from_block
        return self.rpc.head()

    @property
    def tip(self) -> int | None:
        return max(self._blocks) if self._blocks else None

    # ---------------------------------------------------------------- reorgs
    def _node_hash(self, number: int) -> str | None:
        b = self.rpc.block(number, full=False)
        return None if b is None else b["hash"].lower()

    def _rewind(self, res: StepResult) -> None:
        """Walk back to the common ancestor; retract every orphaned block above it, newest first."""
        n = self.tip
        while n is not None and n in self._blocks and self._node_hash(n) != self._blocks[n].hash:
            n -= 1
        if n is not None and n not in self._blocks and self._blocks:
            raise RuntimeError(
                f"reorg deeper than the follower's window of {self.window} blocks (below block {n + 1}); "
                "re-run `continuum backfill chain` over the affected range"
            )
        ancestor = n if n is not None else self.next_block - 1
        retractions = []
        for m in sorted((m for m in self._blocks if m > ancestor), reverse=True):
            b = self._blocks.pop(m)
            if b.final or m <= self._final_upto:
                log.warning("reorg reached final block %d (deeper than %d confirmations)", m, self.confirmations)
            retractions.append(Retraction(chain=self.chain, block_number=m, block_hash=b.hash, ts=b.ts))
            res.retracted.append(m)
        self._final_upto = min(self._final_upto, ancestor)
        self.sink.retract(retractions)
        self.next_block = ancestor + 1
        log.info("reorg: retracted %d block(s) above common ancestor %d", len(retractions), ancestor)

    # ---------------------------------------------------------------- polling
    def _fetch(self, number: int) -> tuple[dict, list[dict]] | None:
        blk = self.rpc.block(number, full=True)
        if blk is None:
            return None
        return blk, self.rpc.call("eth_getLogs", [log_filter(self.addresses, blockHash=blk["hash"])])

    def step(self) -> StepResult:
        """One poll: check the tip, ingest new blocks (up to ``max_blocks_per_step``), finalise deep ones."""
        head = self.rpc.head()
        res = StepResult(head=head)
        tip = self.tip
        if tip is not None and self._node_hash(tip) != self._blocks[tip].hash:
            self._rewind(res)
        pending: list[Event] = []
        while self.next_block <= head and len(res.emitted) < self.max_blocks:
            n = self.next_block
            got = self._fetch(n)
            if got is None:  # the node's head moved back under us (a reorg in progress)
                break
            blk, logs = got
            parent = self._blocks.get(n - 1)
            if parent is not None and blk["parentHash"].lower() != parent.hash:
                self.sink.write(pending)
                pending = []
                self._rewind(res)
                continue
            evs = block_events(self.rpc, blk, logs, self.chain, self.meta, final=head - n >= self.confirmations)
            pending += evs
            self._blocks[n] = evs[0]
            res.emitted.append(n)
            self.next_block = n + 1
        # finalise blocks that are now deep enough (re-emitted with final=True)
        for n in sorted(self._blocks):
            b = self._blocks[n]
            if head - n >= self.confirmations and not b.final:
                fb = dataclasses.replace(b, final=True)
                self._blocks[n] = fb
                pending = [e for e in pending if not (isinstance(e, Block) and e.number == n)] + [fb]
                res.finalized.append(n)
        if self._blocks:
            fin = [n for n, b in self._blocks.items() if b.final]
            self._final_upto = max([self._final_upto, *fin])
        self.sink.write(pending)
        for n in [n for n in self._blocks if n < (self.tip or 0) - self.window]:
            del self._blocks[n]
        return res

    def run(self, poll_s: float = 2.0, max_steps: int | None = None, stop: threading.Event | None = None) -> None:
        """Follow until ``stop`` is set or ``max_steps`` polls ran; transient network errors are retried."""
        self.rpc.subscribe_heads()
        steps, backoff = 0, poll_s
        while (max_steps is None or steps < max_steps) and not (stop and stop.is_set()):
            try:
                res = self.step()
                backoff = poll_s
            except (OSError, TimeoutError) as e:  # node restarting, network blip: retry with backoff
                self.reconnects += 1
                log.warning("chain node unreachable (%s); retrying in %.0fs", self.rpc.redact(str(e)), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            steps += 1
            if res.emitted or res.retracted:
                log.info(
                    "head %d: +%d block(s), %d retracted, %d final",
                    res.head,
                    len(res.emitted),
                    len(res.retracted),
                    len(res.finalized),
                )
            if self.next_block <= res.head:
                continue  # catching up: no sleep
            self.rpc.wait_head(poll_s)
