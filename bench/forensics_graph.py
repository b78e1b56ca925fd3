"""A synthetic mainnet-like transfer graph for the forensics scale bench, generated in time-ordered chunks.

What makes forensics queries hard at mainnet scale is the shape, so the shape is what this copies:
- **power-law degrees**: sender and receiver are drawn from a Zipf law over address ranks (weight ``r^-s``,
  ``s = 0.9``: degree distribution exponent ~2.1, as measured on Ethereum's transaction graph); the top ranks
  are exchange-like hubs with percents of all transfers, both in and out. Below :data:`HUBS` the receiving rank
  is a shuffled copy of the sending one, so in- and out-degree of ordinary addresses are independent;
- **tokens with their real decimals** and mainnet-like shares: native ETH, USDT and USDC (6), WETH, DAI, WBTC (8),
  LINK, and two tokens not in the known-token table (9 and 18 decimals) whose ``value`` is stored the way an
  importer that guessed 18 decimals stores it; amounts log-normal per token, exact in ``raw_value``;
- **time**: timestamps uniform over ``days`` (default 28, from 2024-02-01 UTC: one month partition), blocks of
  12 s, random transaction hashes; chunks come in time order, as a backfill or a follower writes them.

Everything is vectorised (numpy + polars); a chunk of 2M transfers takes a few seconds. Not a model of any real
address: the addresses and hashes are random.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

ZIPF_S = 0.9  # Zipf exponent of sender/receiver ranks
HUBS = 20  # top ranks: exchange-like hubs, labelled "exchange" by the bench (traces stop there by default)
T0_MS = 1_706_745_600_000  # 2024-02-01T00:00:00Z
BLOCK0 = 19_130_000  # mainnet's block height at T0, roughly
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"

# token -> (contract or None for native ether, symbol, decimals, share of transfers, median amount, log-sigma)
TOKENS = [
    (None, "ETH", 18, 0.22, 0.3, 2.0),
    (USDT, "USDT", 6, 0.28, 400.0, 2.3),
    ("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "USDC", 6, 0.17, 500.0, 2.3),
    ("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "WETH", 18, 0.13, 0.5, 2.0),
    ("0x6b175474e89094c44da98b954eedeac495271d0f", "DAI", 18, 0.05, 300.0, 2.3),
    ("0x2260fac5e5542a773aa44fbcfedf7c193bc2c599", "WBTC", 8, 0.03, 0.05, 2.0),
    ("0x514910771af9ca656af840dff83e8264ecf986ca", "LINK", 18, 0.04, 40.0, 2.0),
    ("0x6982508145454ce325ddbe47a25d4ec3d2311933", "MEME", 9, 0.05, 2e6, 2.5),  # not in the known-token table
    ("0x95ad61b0a150d79219dcf64e1e6cc01f0b64c4ce", "FOO", 18, 0.03, 1e5, 2.5),  # not in the known-token table
]
KNOWN = {"ETH", "USDT", "USDC", "WETH", "DAI", "WBTC", "LINK"}  # tokens forensics.values knows the decimals of


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> pl.Series:
    """``n`` random ``0x``-prefixed hex strings of ``nbytes`` bytes (seeded: a rerun rebuilds the same lake)."""
    raw = np.frombuffer(rng.bytes(nbytes * n).hex().encode(), dtype=f"S{2 * nbytes}")
    return ("0x" + pl.Series(raw).cast(pl.String)).alias("hex")


@dataclass
class Graph:
    """The address book and the two rank laws; :meth:`chunks` draws transfers from them."""

    transfers: int
    addresses: pl.Series  # by rank: rank 0 is the busiest hub
    receiver_rank: np.ndarray  # receiving rank r's address index (hubs fixed, the rest shuffled)
    cdf: np.ndarray
    days: int
    seed: int

    @classmethod
    def make(cls, transfers: int, days: int = 28, seed: int = 0, addresses: int | None = None) -> Graph:
        n_addr = addresses or max(1000, transfers // 10)
        rng = np.random.default_rng(seed)
        cdf = np.cumsum((np.arange(n_addr) + 1.0) ** -ZIPF_S)
        cdf /= cdf[-1]
        recv = np.arange(n_addr)
        recv[HUBS:] = rng.permutation(recv[HUBS:])
        return cls(transfers, _hex(rng, n_addr, 20), recv, cdf, days, seed)

    def rank(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, u), len(self.cdf) - 1)

    def chunks(self, rows: int) -> Iterator[pl.DataFrame]:
        """The transfers in time order, ``rows`` at a time, with the lake's Transfer columns."""
        rng = np.random.default_rng(self.seed + 1)
        span = self.days * 86_400_000
        shares = np.array([t[3] for t in TOKENS])
        for start in range(0, self.transfers, rows):
            n = min(rows, self.transfers - start)
            lo, hi = T0_MS + span * start // self.transfers, T0_MS + span * (start + n) // self.transfers
            ts = np.sort(rng.integers(lo, hi, n))
            src = self.rank(rng.random(n))
            dst = self.receiver_rank[self.rank(rng.random(n))]
            dst = np.where(dst == src, (dst + 1) % len(self.cdf), dst)  # no self-transfers
            tok = rng.choice(len(TOKENS), n, p=shares / shares.sum())
            yield self._frame(rng, ts, src, dst, tok)

    def _frame(self, rng, ts, src, dst, tok) -> pl.DataFrame:
        n = len(ts)
        median = np.array([t[4] for t in TOKENS])[tok]
        sigma = np.array([t[5] for t in TOKENS])[tok]
        amount = median * np.exp(sigma * rng.standard_normal(n))
        micro = np.maximum(np.round(amount * 1e6), 1).astype(np.int64)  # exact amount in 10^-6 token units
        dec = np.array([t[2] for t in TOKENS])[tok]
        known = np.array([t[1] in KNOWN for t in TOKENS])[tok]
        # stored value: the token's units where the importer knew the decimals, raw / 1e18 where it guessed
        value = np.where(known, micro / 1e6, micro * 10.0 ** (dec - 6) / 1e18)
        block = BLOCK0 + (ts - T0_MS) // 12_000
        tokens = pl.DataFrame(
            {
                "tok": range(len(TOKENS)),
                "token": [t[0] for t in TOKENS],
                "symbol": [t[1] for t in TOKENS],
                "zeros": ["0" * (t[2] - 6) for t in TOKENS],
            },
            schema={"tok": pl.Int64, "token": pl.String, "symbol": pl.String, "zeros": pl.String},
        )
        df = pl.DataFrame(
            {
                "chain": pl.Series(["ethereum"]).extend_constant("ethereum", n - 1),
                "block_number": block,
                "ts": ts,
                "tx_hash": _hex(rng, n, 32),
                "log_index": rng.integers(-1, 300, n),
                "from_address": self.addresses.gather(src),
                "to_address": self.addresses.gather(dst),
                "value": value,
                "micro": micro,
                "tok": tok.astype(np.int64),
            }
        )
        return (
            df.join(tokens, on="tok", how="left", maintain_order="left")
            .with_columns(
                ("0x" + pl.col("block_number").cast(pl.String).str.zfill(64)).alias("block_hash"),
                (pl.col("micro").cast(pl.String) + pl.col("zeros")).alias("raw_value"),
                pl.when(pl.col("token").is_null()).then(-1).otherwise(pl.col("log_index")).alias("log_index"),
                pl.lit(None, pl.String).alias("from_label"),
                pl.lit(None, pl.String).alias("to_label"),
            )
            .select(
                "chain",
                "block_number",
                "block_hash",
                "ts",
                "tx_hash",
                "log_index",
                "token",
                "symbol",
                "from_address",
                "to_address",
                "value",
                "raw_value",
                "from_label",
                "to_label",
            )  # fmt: skip
        )

    def labels(self, seed: int = 0) -> pl.DataFrame:
        """Hubs as exchanges, and a few mid-degree addresses in each risk category (alerts have hits)."""
        rng = np.random.default_rng(seed + 2)
        mid = rng.choice(np.arange(HUBS * 5, min(len(self.cdf), HUBS * 500)), 40, replace=False)
        cats = ["mixer"] * 10 + ["sanctioned"] * 10 + ["exploit"] * 10 + ["phishing"] * 10
        ranks = [*range(HUBS), *mid.tolist()]
        return pl.DataFrame(
            {
                "address": self.addresses.gather(ranks),
                "name": [f"Hub {r}" for r in range(HUBS)] + [f"{c} {i}" for i, c in enumerate(cats)],
                "category": ["exchange"] * HUBS + cats,
                "source": ["bench"] * len(ranks),
            }
        )
