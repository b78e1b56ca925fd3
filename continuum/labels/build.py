"""Rebuild ``labels.parquet`` (the product's address label set) from the shared onchain label data.

Run by hand when the sources change, never at install::

    python continuum/labels/build.py --src ../shared/data/onchain --out continuum/labels/labels.parquet

One row per address. Where several sources label the same address, the most severe category wins
(sanctioned > exploit > mixer > phishing > exchange > bridge > dex > other), because a forensics analyst
must never see "Binance 14" where OFAC lists the address. SOURCES.md beside this file gives the source
and licence of every input.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import polars as pl

SEVERITY = ("sanctioned", "exploit", "mixer", "phishing", "exchange", "bridge", "dex", "other")
_ADDR = re.compile(r"0x[0-9a-fA-F]{40}")

# Etherscan tags that name a centralised exchange's own wallets (hot wallets, deposit collectors).
CEX_TAGS = {
    "ascendex", "binance", "binance-deposit", "bitfinex", "bithumb", "bitstamp", "bittrex", "coinbase",
    "crypto-com", "ftx", "gate-io", "gemini", "hitbtc", "hot-wallet", "huobi", "kraken", "kucoin", "okx",
    "poloniex", "tidex", "upbit", "fiat-gateway",
}  # fmt: skip
DEX_TAGS = {
    "dex", "dex-ag", "airswap", "sushiswap", "kyberswap", "balancer", "bancor", "curve-fi", "uniswap",
    "pancakeswap", "paraswap", "sudoswap", "swipeswap", "0x-protocol", "1inch", "dydx", "idex", "mcdex",
}  # fmt: skip
MIXER_TAGS = {"tornado-cash", "ethereum-mixer", "privacy"}
BRIDGE_TAGS = {"bridge"}
SANCTION_TAGS = {"ofac-sanctions-lists"}
# exchange-tagged token contracts ("OKB (OKB)", "Binance Wrapped BCH") are not exchange wallets
_TOKEN_NAME = re.compile(r"\([A-Za-z0-9$.+-]+\)\s*$|\bToken\b|Wrapped|Gold")


def _etherscan(src: Path) -> pl.DataFrame:
    doc = json.loads((src / "labels" / "etherscan_combinedAllLabels_2023-06.json").read_text())
    rows = []
    for addr, v in doc.items():
        tags = set(v.get("labels") or [])
        if SANCTION_TAGS & tags:
            cat = "sanctioned"
        elif MIXER_TAGS & tags:
            cat = "mixer"
        elif CEX_TAGS & tags and not _TOKEN_NAME.search(v.get("name") or ""):
            cat = "exchange"
        elif BRIDGE_TAGS & tags:
            cat = "bridge"
        elif DEX_TAGS & tags:
            cat = "dex"
        else:
            cat = "other"
        name = v.get("name") or ", ".join(sorted(tags))
        rows.append((addr, name, cat, "etherscan"))
    return _frame(rows)


def _ofac(src: Path) -> pl.DataFrame:
    rows = []
    for f in ("ofac_sanctioned_addresses_ETH.txt", "ofac_sanctioned_addresses_USDT.txt",
              "ofac_sanctioned_addresses_USDC.txt"):  # fmt: skip
        for line in (src / "labels" / f).read_text().split():
            if _ADDR.fullmatch(line):
                rows.append((line, "OFAC SDN list", "sanctioned", "ofac"))
    return _frame(rows)


def _tornado(src: Path) -> pl.DataFrame:
    pools = json.loads((src / "tornado_cash" / "tornado_pools.json").read_text())
    return _frame([(a, f"Tornado Cash: {n} pool", "mixer", "tornado_cash") for a, n in pools.items()])


def _forta(src: Path) -> pl.DataFrame:
    rows = []
    mal = pl.read_csv(src / "labels" / "forta_eth_etherscan_malicious_labels.csv", infer_schema_length=0)
    for a, tag, ds in mal.iter_rows():
        cat = "phishing" if ds == "etherscan-phish-hack-list" else "exploit"
        rows.append((a, tag or ds, cat, "forta"))
    ph = pl.read_csv(src / "labels" / "forta_eth_phishing_scams.csv", infer_schema_length=0)
    rows += [
        (a, tag or "phish-hack", "phishing", "forta") for a, tag in ph.select("address", "etherscan_tag").iter_rows()
    ]
    sc = pl.read_csv(src / "labels" / "forta_eth_malicious_smart_contracts.csv", infer_schema_length=0)
    for r in sc.iter_rows(named=True):
        cat = "phishing" if r["contract_creator_etherscan_label"] == "phish-hack" else "exploit"
        rows.append((r["contract_address"], r["contract_tag"] or "malicious contract", cat, "forta"))
        if r["contract_creator"]:
            rows.append(
                (r["contract_creator"], r["contract_creator_tag"] or "malicious contract creator", cat, "forta")
            )
    return _frame(rows)


def _defihacklabs(src: Path) -> pl.DataFrame:
    """Attackers and attack contracts of Ethereum-mainnet incidents (other chains' addresses are not ours)."""
    h = pl.read_csv(src / "labels" / "defihacklabs_incidents.csv", infer_schema_length=0)
    h = h.filter((pl.col("fork_chain") == "mainnet") | pl.col("attack_txs").str.contains("ethereum:"))
    rows = []
    for r in h.iter_rows(named=True):
        for col, what in (("attacker", "attacker"), ("attack_contract", "attack contract")):
            for a in _ADDR.findall(r[col] or ""):
                rows.append((a, f"{r['title']} exploit {what} ({r['folder']})", "exploit", "defihacklabs"))
    return _frame(rows)


def _frame(rows: list[tuple[str, str, str, str]]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=["address", "name", "category", "source"], orient="row")
    return df.with_columns(pl.col("address").str.to_lowercase()).filter(
        pl.col("address").str.contains(r"^0x[0-9a-f]{40}$")
    )


def build(src: Path) -> pl.DataFrame:
    """All sources merged, one row per address, most severe category first; names from the same source."""
    df = pl.concat([_ofac(src), _tornado(src), _defihacklabs(src), _forta(src), _etherscan(src)])
    rank = {c: i for i, c in enumerate(SEVERITY)}
    df = df.with_columns(pl.col("category").replace_strict(rank, return_dtype=pl.Int8).alias("_rank"))
    # an OFAC entry without a name takes the Etherscan/Tornado name of the same address
    names = df.filter(pl.col("source") != "ofac").group_by("address").agg(pl.col("name").first().alias("_alt"))
    df = df.join(names, on="address", how="left").with_columns(
        pl.when(pl.col("source") == "ofac").then(pl.coalesce("_alt", "name")).otherwise("name").alias("name")
    )
    out = df.sort("_rank", maintain_order=True).unique("address", keep="first", maintain_order=True)
    return out.select("address", "name", "category", "source").sort("address")


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=here.parents[2] / "shared" / "data" / "onchain")
    p.add_argument("--out", type=Path, default=here / "labels.parquet")
    a = p.parse_args()
    df = build(a.src)
    df.write_parquet(a.out, compression="zstd", compression_level=19)
    print(f"{df.height} addresses -> {a.out}")
    print(df.group_by("category").len().sort("category"))


if __name__ == "__main__":
    main()
