"""One block as events, read from the node: the block, its native transfers, its decoded logs.

Token decimals and symbols, and the two tokens of a pool, are read with ``eth_call`` once and cached for the
process (:class:`RpcMetadata`); value-carrying transactions' receipts are read in one batch, so a failed
transaction's ETH transfer is not emitted.
"""

from __future__ import annotations

from continuum.schema import Event
from ingest.chain.decode import TokenInfo, block_event, decode_log, native_transfers, qty
from ingest.chain.rpc import Rpc, RpcError

# keccak selectors of the view functions read for metadata
_SEL = {"decimals": "0x313ce567", "symbol": "0x95d89b41", "token0": "0x0dfe1681", "token1": "0xd21220a7"}


class RpcMetadata:
    """Token decimals/symbols and pool tokens read from the node with ``eth_call``, cached for the process.

    A token that does not answer ``decimals()`` keeps unknown decimals (raw units downstream); ``symbol()``
    may return a string or a bytes32 (MKR, SAI), both are read.
    """

    def __init__(self, rpc: Rpc, known: dict[str, TokenInfo] | None = None):
        self.rpc = rpc
        self._tokens: dict[str, TokenInfo] = dict(known or {})
        self._pools: dict[str, tuple[str, str] | None] = {}

    def _eth_call(self, to: str, fn: str) -> str | None:
        try:
            out = self.rpc.call("eth_call", [{"to": to, "data": _SEL[fn]}, "latest"])
        except RpcError:
            return None
        return out if out and out != "0x" else None

    def token(self, address: str) -> TokenInfo:
        a = address.lower()
        if a not in self._tokens:
            dec = self._eth_call(a, "decimals")
            sym = self._eth_call(a, "symbol")
            decimals = qty(dec) if dec and len(dec) == 66 and qty(dec) <= 255 else None
            self._tokens[a] = TokenInfo(_symbol(sym), decimals)
        return self._tokens[a]

    def pool_tokens(self, pool: str) -> tuple[str, str] | None:
        p = pool.lower()
        if p not in self._pools:
            t0, t1 = self._eth_call(p, "token0"), self._eth_call(p, "token1")
            ok = t0 and t1 and len(t0) == 66 and len(t1) == 66
            self._pools[p] = ("0x" + t0[-40:], "0x" + t1[-40:]) if ok else None
        return self._pools[p]


def _symbol(raw: str | None) -> str | None:
    if not raw:
        return None
    b = bytes.fromhex(raw[2:])
    try:
        from eth_abi import decode

        s = decode(["string"], b)[0]
    except Exception:  # not an ABI string: a bytes32 symbol
        s = b[:32].rstrip(b"\0").decode("utf-8", "replace")
    s = "".join(ch for ch in s if ch.isprintable()).strip()
    return s[:32] or None


def block_events(
    rpc: Rpc,
    block: dict,
    logs: list[dict],
    chain: str,
    meta: RpcMetadata,
    final: bool = False,
) -> list[Event]:
    """The events of one full block given its logs: Block, native transfers (successful txs), transfers, swaps."""
    value_txs = [tx["hash"] for tx in block["transactions"] if qty(tx["value"]) and tx.get("to")]
    failed: set[str] = set()
    if value_txs:
        receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in value_txs])
        failed = {r["transactionHash"].lower() for r in receipts if r and qty(r.get("status", "0x1")) == 0}
    ts = qty(block["timestamp"]) * 1000
    out: list[Event] = [block_event(block, chain, final)]
    out += native_transfers(block, chain, failed)
    for lg in sorted(logs, key=lambda x: qty(x["logIndex"])):
        if lg.get("removed"):
            continue
        ev = decode_log(lg, chain, ts, meta)
        if ev is not None:
            out.append(ev)
    return out
