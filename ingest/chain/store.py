"""Where the chain source's events go (the lake, the bus, or both), and what the lake holds of a chain.

A block that a reorg orphans is retracted: :func:`apply_retraction` drops every lake row derived from it,
and a :class:`~continuum.schema.Retraction` on the bus tells consumers to do the same. :func:`chain_view`
reads the provisional view (every stored block) or the final one (blocks with enough confirmations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from continuum.lake import Lake
from continuum.schema import Event, Retraction


@dataclass
class Sink:
    """The lake and/or the bus (``publish``, then ``flush`` after each batch); either may be absent."""

    lake: Lake | None = None
    publish: Callable[[Event], None] | None = None
    flush: Callable[[], None] | None = None

    def write(self, events: Sequence[Event]) -> None:
        """Store and publish one batch of events."""
        if not events:
            return
        if self.lake is not None:
            self.lake.append_events(events)
        self._send(events)

    def retract(self, retractions: Sequence[Retraction]) -> None:
        """Drop the orphaned blocks' rows from the lake and announce the retractions on the bus."""
        if self.lake is not None:
            for r in retractions:
                apply_retraction(self.lake, r)
        self._send(retractions)

    def _send(self, events: Sequence[Event]) -> None:
        if self.publish is None:
            return
        for e in events:
            self.publish(e)
        if self.flush is not None:
            self.flush()


def apply_retraction(lake: Lake, r: Retraction) -> int:
    """Drop every lake row derived from the orphaned block ``r`` (blocks, transfers, swaps). Returns rows removed."""
    n = lake.delete("block", (pl.col("chain") == r.chain) & (pl.col("hash") == r.block_hash))
    for kind in ("transfer", "swap"):
        n += lake.delete(kind, (pl.col("chain") == r.chain) & (pl.col("block_hash") == r.block_hash))
    return n


def chain_view(lake: Lake, kind: str, chain: str, final_only: bool = False) -> pl.DataFrame:
    """Lake rows of ``kind`` (block, transfer, swap) for ``chain``: all (provisional view) or final blocks only."""
    lf = lake.scan(kind, chain=chain)
    if not lf.collect_schema().names():
        return pl.DataFrame()
    if not final_only:
        return lf.collect()
    if kind == "block":
        return lf.filter(pl.col("final")).collect()
    fin = lake.scan("block", chain=chain).filter(pl.col("final")).select(pl.col("hash").alias("block_hash"))
    return lf.join(fin, on="block_hash", how="semi").collect()
