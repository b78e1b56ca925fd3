"""Log decoding for the chain source: ERC-20 ``Transfer``, Uniswap V2 and V3 ``Swap``, native ETH transfers.

Pure functions over plain JSON-RPC dictionaries (hex strings, as a node returns them), so the same code
decodes a live node's logs, ``eth_getLogs`` backfills and ethereum-etl exports (:mod:`ingest.chain.etl`). No
web3 objects cross this boundary: ``HexBytes.hex()`` has no ``0x`` prefix, and a topic compared with it
silently never matches; everything here is lower-case ``0x`` hex.

Token decimals/symbols and pool tokens come from a :class:`Metadata`: the live one
(:class:`~ingest.chain.blocks.RpcMetadata`) calls the node and caches, :class:`~ingest.chain.etl.EtlMetadata`
infers pools from an export's own transfers. A token whose ``decimals()`` is unknown keeps ``value`` in raw
units and ``symbol`` None, so a reader can tell it was not scaled.

Event signatures follow the contracts: ERC-20 (EIP-20), UniswapV2Pair.sol and UniswapV3Pool.sol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from continuum.labels import label_of
from continuum.schema import Block, Swap, Transfer

# keccak256 of the event signatures (topic 0):
# Transfer(address,address,uint256); V2 Swap(address,uint256,uint256,uint256,uint256,address);
# V3 Swap(address,address,int256,int256,uint160,uint128,int24)
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
V2_SWAP_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
V3_SWAP_TOPIC = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
LOG_TOPICS = (TRANSFER_TOPIC, V2_SWAP_TOPIC, V3_SWAP_TOPIC)


def log_filter(addresses: list[str] | None = None, topics: list | None = None, **where: Any) -> dict[str, Any]:
    """An ``eth_getLogs`` filter (``where``: ``blockHash``, or ``fromBlock`` and ``toBlock``).

    ``topics``: any of these as topic 0 (default: the ones decoded here); ``addresses``: only these contracts.
    """
    flt: dict[str, Any] = {**where, "topics": [list(topics or LOG_TOPICS)]}
    if addresses:
        flt["address"] = addresses
    return flt


@dataclass(frozen=True, slots=True)
class TokenInfo:
    symbol: str | None
    decimals: int | None


class Metadata(Protocol):
    """Where token and pool facts come from (a node with a cache, or an export)."""

    def token(self, address: str) -> TokenInfo: ...

    def pool_tokens(self, pool: str) -> tuple[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class RawSwap:
    """A swap before scaling: exact integers, signs from the pool's point of view resolved to in/out."""

    dex: str
    pool: str
    sender: str
    recipient: str
    in_index: int  # 0 if token0 went into the pool, else 1
    amount_in: int
    amount_out: int


# ----------------------------------------------------------------------------- hex helpers
def _word_address(word: str) -> str:
    """Last 20 bytes of a 32-byte hex word, as a lower-case 0x address."""
    return "0x" + word[-40:].lower()


def _words(data: str) -> list[str]:
    h = data[2:] if data.startswith("0x") else data
    return [h[i : i + 64] for i in range(0, len(h), 64)]


def _int(word: str, signed: bool = False) -> int:
    v = int(word, 16)
    if signed and v >= 1 << 255:
        v -= 1 << 256
    return v


def qty(x: str | int) -> int:
    """A JSON-RPC quantity (``"0x1a"``) or an int, as int."""
    return x if isinstance(x, int) else int(x, 16)


# ----------------------------------------------------------------------------- decoders
def transfer_fields(log: dict) -> tuple[str, str, int] | None:
    """(from, to, raw value) of an ERC-20 Transfer log, or None for anything else (ERC-721 has 4 topics).

    Like ethereum-etl, indexed and non-indexed words are taken together, so the rare tokens that do not
    index ``from``/``to`` decode too.
    """
    topics = log["topics"]
    if not topics or topics[0].lower() != TRANSFER_TOPIC:
        return None
    words = [t[2:] for t in topics[1:]] + _words(log["data"])
    if len(words) != 3 or any(len(w) != 64 for w in words):
        return None
    return _word_address(words[0]), _word_address(words[1]), _int(words[2])


def swap_fields(log: dict) -> RawSwap | None:
    """Uniswap V2 or V3 Swap log as a :class:`RawSwap`; None if the log is neither."""
    topics = log["topics"]
    if len(topics) != 3:
        return None
    t0 = topics[0].lower()
    w = _words(log["data"])
    pool, sender, recipient = log["address"].lower(), _word_address(topics[1]), _word_address(topics[2])
    if t0 == V2_SWAP_TOPIC and len(w) == 4:
        a0in, a1in, a0out, a1out = (_int(x) for x in w)
        net0, net1 = a0in - a0out, a1in - a1out  # into the pool, net
        if net0 > 0 or (net0 == 0 and net1 < 0):
            return RawSwap("uniswap_v2", pool, sender, recipient, 0, net0, -net1)
        return RawSwap("uniswap_v2", pool, sender, recipient, 1, net1, -net0)
    if t0 == V3_SWAP_TOPIC and len(w) == 5:
        a0, a1 = _int(w[0], signed=True), _int(w[1], signed=True)  # positive: paid into the pool
        if a0 > 0:
            return RawSwap("uniswap_v3", pool, sender, recipient, 0, a0, -a1)
        return RawSwap("uniswap_v3", pool, sender, recipient, 1, a1, -a0)
    return None


def scale(raw: int, decimals: int | None) -> float:
    return float(raw) if decimals is None else raw / 10**decimals


def _label(address: str) -> str | None:
    lab = label_of(address)
    return lab["name"] if lab else None


def decode_log(log: dict, chain: str, ts_ms: int, meta: Metadata) -> Transfer | Swap | None:
    """One log (JSON-RPC or :func:`etl_log` shape) as a Transfer or Swap event; None if not ours."""
    common = {
        "chain": chain,
        "block_number": qty(log["blockNumber"]),
        "block_hash": log["blockHash"].lower(),
        "ts": ts_ms,
        "tx_hash": log["transactionHash"].lower(),
        "log_index": qty(log["logIndex"]),
    }
    t = transfer_fields(log)
    if t is not None:
        token = log["address"].lower()
        info = meta.token(token)
        return Transfer(
            **common,
            token=token,
            symbol=info.symbol if info.decimals is not None else None,
            from_address=t[0],
            to_address=t[1],
            value=scale(t[2], info.decimals),
            raw_value=str(t[2]),
            from_label=_label(t[0]),
            to_label=_label(t[1]),
        )
    s = swap_fields(log)
    if s is not None:
        pair = meta.pool_tokens(s.pool)
        tin = tout = None
        din = dout = None
        if pair is not None:
            tin, tout = (pair[0], pair[1]) if s.in_index == 0 else (pair[1], pair[0])
            din, dout = meta.token(tin).decimals, meta.token(tout).decimals
        return Swap(
            **common,
            dex=s.dex,
            pool=s.pool,
            sender=s.sender,
            recipient=s.recipient,
            token_in=tin,
            token_out=tout,
            amount_in=scale(s.amount_in, din),
            amount_out=scale(s.amount_out, dout),
        )
    return None


def native_transfers(block: dict, chain: str, failed: set[str] = frozenset()) -> Iterator[Transfer]:
    """Top-level ETH value transfers of a full block (``eth_getBlockByNumber(n, true)``), skipping failed txs.

    Internal (contract-to-contract) ETH moves need traces, which most nodes do not serve; they are not here.
    Contract creations (``to`` null) carry value to the new contract's address, which only the receipt
    knows; they are skipped too.
    """
    ts = qty(block["timestamp"]) * 1000
    for tx in block["transactions"]:
        v = qty(tx["value"])
        if v == 0 or tx.get("to") is None or tx["hash"].lower() in failed:
            continue
        frm, to = tx["from"].lower(), tx["to"].lower()
        yield Transfer(
            chain=chain,
            block_number=qty(block["number"]),
            block_hash=block["hash"].lower(),
            ts=ts,
            tx_hash=tx["hash"].lower(),
            log_index=-1,
            token=None,
            symbol="ETH",
            from_address=frm,
            to_address=to,
            value=v / 1e18,
            raw_value=str(v),
            from_label=_label(frm),
            to_label=_label(to),
        )


def block_event(block: dict, chain: str, final: bool = False) -> Block:
    base = block.get("baseFeePerGas")
    return Block(
        chain=chain,
        number=qty(block["number"]),
        hash=block["hash"].lower(),
        parent_hash=block["parentHash"].lower(),
        ts=qty(block["timestamp"]) * 1000,
        tx_count=len(block["transactions"]),
        gas_used=qty(block["gasUsed"]),
        base_fee_gwei=None if base is None else qty(base) / 1e9,
        final=final,
    )
