"""The chain source: an Ethereum JSON-RPC node (or an ethereum-etl export) as blocks, transfers and swaps.

- :mod:`.rpc`: :class:`Rpc`, raw JSON-RPC over HTTP or a websocket; URLs are shown masked (API keys).
- :mod:`.decode`: pure decoders of ERC-20 ``Transfer`` and Uniswap V2/V3 ``Swap`` logs, native transfers.
- :mod:`.blocks`: one block's events read from the node, with token metadata cached (:class:`RpcMetadata`).
- :mod:`.follower`: :class:`ChainFollower`, the head followed live, reorg-safe (retractions), resumable.
- :mod:`.backfill`: :func:`backfill`, history over ``eth_getLogs`` ranges split when a node refuses them.
- :mod:`.store`: where events go (lake, bus) and the provisional or final view of the lake (:func:`chain_view`).
- :mod:`.etl`: ethereum-etl exports decoded like a node's logs.

The names below are the package's interface; ``from ingest.chain import backfill`` is the function.
"""

from ingest.chain.backfill import BackfillStats, backfill, fetch_logs
from ingest.chain.blocks import RpcMetadata, block_events
from ingest.chain.decode import LOG_TOPICS, Metadata, TokenInfo, decode_log, qty, swap_fields, transfer_fields
from ingest.chain.etl import EtlMetadata, decode_etl_export, etl_log, read_jsonl
from ingest.chain.follower import ChainFollower, StepResult
from ingest.chain.rpc import Rpc, RpcError, RpcUnavailable, check_address
from ingest.chain.store import Sink, apply_retraction, chain_view

__all__ = [
    "LOG_TOPICS",
    "BackfillStats",
    "ChainFollower",
    "EtlMetadata",
    "Metadata",
    "Rpc",
    "RpcError",
    "RpcMetadata",
    "RpcUnavailable",
    "Sink",
    "StepResult",
    "TokenInfo",
    "apply_retraction",
    "backfill",
    "block_events",
    "chain_view",
    "check_address",
    "decode_etl_export",
    "decode_log",
    "etl_log",
    "fetch_logs",
    "qty",
    "read_jsonl",
    "swap_fields",
    "transfer_fields",
]
