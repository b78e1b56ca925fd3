"""Import ethereum-etl exports (``token_transfers``, ``transactions``) into the lake as ``Transfer`` rows.

Many analysts already hold ethereum-etl dumps (CSV or JSON lines, from ``ethereumetl export_all`` or the
public BigQuery tables); this lets ``continuum trace`` run on them without a node::

    continuum import etl path/to/export_dir --lake .continuum/lake

What is read, from any file under the directory whose name starts with the table name:
- ``token_transfers.{csv,jsonl,json}``: ERC-20 ``Transfer`` logs -> one row each (``log_index`` from the log);
- ``transactions.{csv,jsonl,json}``: successful transactions with a non-zero ETH value -> one native transfer
  each (``log_index = -1``, ``token = None``, symbol ETH);
- ``blocks.*`` only when a table lacks ``block_timestamp`` (older exports);
- ``tokens.*`` (ethereum-etl's token table) for symbols and decimals when present.

Decimals: ethereum-etl's token_transfers carry raw integer amounts. ``value`` needs the token's decimals;
they come from ``tokens.*`` when exported, else from the small table of major mainnet tokens below, else
18 (the ERC-20 default) — the exact amount is always kept in ``raw_value``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from continuum.schema import Transfer
from forensics.values import KNOWN_TOKENS  # major mainnet tokens: one table for the importer and the queries


def _rows(path: Path) -> Iterator[dict]:
    """Rows of a CSV or JSON-lines file as dicts (big integers stay exact: json keeps ints, csv keeps text)."""
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            yield from csv.DictReader(f)
    else:
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _table(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(f"{name}*") if p.suffix in (".csv", ".jsonl", ".json") and p.is_file())


def _nullable(v: object) -> str | None:
    return None if v in (None, "", "null", "None") else str(v)


def read_export(root: str | Path, chain: str = "ethereum") -> list[Transfer]:
    """All transfers in an ethereum-etl export directory, validated against the schema."""
    root = Path(root)
    if not root.is_dir():
        from continuum.errors import UserError

        raise UserError(f"{root} is not a directory; point at the folder holding token_transfers/transactions files")
    tokens = dict(KNOWN_TOKENS)
    for p in _table(root, "tokens"):
        for r in _rows(p):
            dec = _nullable(r.get("decimals"))
            if dec is not None and str(dec).isdigit():
                tokens[str(r["address"]).lower()] = (_nullable(r.get("symbol")) or "", int(dec))
    block_ts: dict[int, int] = {}
    for p in _table(root, "blocks"):
        for r in _rows(p):
            block_ts[int(r["number"])] = int(r["timestamp"])

    def transfer(r: dict, tx_key: str, log_index: int, token: str | None, symbol: str | None, to: str, decimals: int):
        """One row of either table as a Transfer: the chain position, the parties, the exact and scaled amount."""
        t = _nullable(r.get("block_timestamp"))
        raw = int(r["value"])
        return Transfer(
            chain=chain,
            block_number=int(r["block_number"]),
            block_hash=str(r["block_hash"]).lower(),
            ts=int(t if t is not None else block_ts[int(r["block_number"])]) * 1000,
            tx_hash=str(r[tx_key]).lower(),
            log_index=log_index,
            token=token,
            symbol=symbol,
            from_address=str(r["from_address"]).lower(),
            to_address=to.lower(),
            value=raw / 10**decimals,
            raw_value=str(raw),
        )

    out: list[Transfer] = []
    for p in _table(root, "token_transfers"):
        for r in _rows(p):
            token = str(r["token_address"]).lower()
            symbol, decimals = tokens.get(token, (None, 18))
            log_index = int(r["log_index"])
            out.append(transfer(r, "transaction_hash", log_index, token, symbol or None, r["to_address"], decimals))
    for p in _table(root, "transactions"):
        for r in _rows(p):
            to = _nullable(r.get("to_address"))
            status = _nullable(r.get("receipt_status"))
            if int(r["value"]) == 0 or to is None or status == "0":
                continue  # no ETH moved, a contract creation, or a reverted transaction
            out.append(transfer(r, "hash", -1, None, "ETH", to, 18))
    return out


def import_export(root: str | Path, lake_root: str | Path, chain: str = "ethereum") -> tuple[int, int]:
    """Read an export and append it to the lake; returns (rows read, rows new to the lake)."""
    from continuum.lake import Lake

    events = read_export(root, chain)
    return len(events), Lake(lake_root).append_events(events) if events else 0
