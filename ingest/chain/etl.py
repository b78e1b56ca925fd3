"""ethereum-etl exports decoded like a node's logs: ``logs.jsonl`` and ``token_transfers.jsonl`` of a directory.

The export has no node behind it, so pool tokens come from the export's own transfers (:class:`EtlMetadata`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ingest.chain.decode import Metadata, TokenInfo, decode_log


def etl_log(row: dict) -> dict:
    """An ethereum-etl ``logs.jsonl`` row in JSON-RPC log shape (what :func:`decode_log` reads)."""
    return {
        "address": row["address"],
        "topics": row["topics"],
        "data": row["data"],
        "blockNumber": row["block_number"],
        "blockHash": row["block_hash"],
        "transactionHash": row["transaction_hash"],
        "logIndex": row["log_index"],
    }


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class EtlMetadata:
    """Metadata for an export with no node behind it.

    Pool tokens are inferred from the export's own token transfers: both Uniswap V2 and V3 order a pool's
    tokens by address (token0 < token1), so the two tokens seen moving in or out of a pool fix the pair.
    Decimals come from ``decimals`` (e.g. a few well-known tokens); others stay unknown (raw units).
    """

    def __init__(self, transfers: Iterable[dict], decimals: dict[str, TokenInfo] | None = None):
        self._decimals = {k.lower(): v for k, v in (decimals or {}).items()}
        seen: dict[str, set[str]] = {}
        for t in transfers:
            for end in (t["from_address"], t["to_address"]):
                seen.setdefault(end.lower(), set()).add(t["token_address"].lower())
        self._seen = seen

    def token(self, address: str) -> TokenInfo:
        return self._decimals.get(address.lower(), TokenInfo(None, None))

    def pool_tokens(self, pool: str) -> tuple[str, str] | None:
        toks = sorted(self._seen.get(pool.lower(), ()))
        return (toks[0], toks[1]) if len(toks) == 2 else None


def decode_etl_export(directory: Path, chain: str = "ethereum", meta: Metadata | None = None) -> list:
    """Every Transfer and Swap in an ethereum-etl export directory (``logs.jsonl``, ``token_transfers.jsonl``)."""
    directory = Path(directory)
    logs = read_jsonl(directory / "logs.jsonl")
    meta = meta or EtlMetadata(read_jsonl(directory / "token_transfers.jsonl"))
    out = []
    for row in logs:
        ev = decode_log(etl_log(row), chain, int(row["block_timestamp"]) * 1000, meta)
        if ev is not None:
            out.append(ev)
    return out
