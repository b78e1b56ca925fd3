"""What a transfer is worth: token decimals an analyst can trust, and USD (USDT) values from the lake's candles.

Amounts of different tokens are never added. A traced edge carries one token; a node's totals are kept per token
(:attr:`forensics.queries.Trace.totals`), and the only cross-token sum is in USD, from prices the lake itself
holds. Every number says where it came from:

- **Decimals** (``decimals_source``): ``contract`` (the token's own ``decimals()``, read over JSON-RPC when a
  lookup is given; cached), ``table`` (:data:`KNOWN_TOKENS`, the major mainnet tokens), ``native`` (ether, 18),
  ``raw`` (unknown: the amount stays in raw integer units, ``unit = "raw"``), ``given`` (a frame without
  ``raw_value``: its ``value`` is taken as already scaled). Amounts are recomputed from ``raw_value`` (the exact
  integer every importer keeps), so a lake filled by an importer that guessed 18 decimals still reads right.
- **Prices** (``usd``): the close of the lake's own 1h candle (``kind=candle``, ``BASE/USDT``, median over
  exchanges) of the hour the transfer was made in. Only tokens whose *contract* is in :data:`KNOWN_TOKENS` (and
  native ether) are priced: a token's self-declared symbol is not evidence (anyone can deploy a token called
  USDC). WETH is priced as ETH (redeemable 1:1 by its contract). USDT is 1 by construction: the candles are quoted
  in USDT, so "USD" here means USDT; no other stablecoin is assumed to be at par. Without a candle for that hour
  the value is null, never interpolated or guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

NATIVE_KEY = "native"  # token key of the chain's native coin (the lake's token is null)
QUOTE = "USDT"  # quote currency of the candles used for prices; "usd" columns are in this unit
HOUR_MS = 3_600_000

# Major mainnet tokens: contract -> (symbol, decimals), from the tokens' own contracts.
KNOWN_TOKENS: dict[str, tuple[str, int]] = {
    "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2": ("WETH", 18),
    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": ("USDC", 6),
    "0xdac17f958d2ee523a2206206994597c13d831ec7": ("USDT", 6),
    "0x6b175474e89094c44da98b954eedeac495271d0f": ("DAI", 18),
    "0x2260fac5e5542a773aa44fbcfedf7c193bc2c599": ("WBTC", 8),
    "0xae7ab96520de3a18e5e111b5eaab095312d7fe84": ("stETH", 18),
    "0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0": ("wstETH", 18),
    "0x514910771af9ca656af840dff83e8264ecf986ca": ("LINK", 18),
    "0x1f9840a85d5af5bf1d1762f925bdaddc4201f984": ("UNI", 18),
}
# The candle base that prices a token (``BASE/USDT``); absent: the token's own symbol from the table.
PRICE_BASE: dict[str, str] = {NATIVE_KEY: "ETH", "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2": "ETH"}
AT_PAR = {"0xdac17f958d2ee523a2206206994597c13d831ec7"}  # USDT: the quote currency itself

DecimalsLookup = Callable[[str], "int | None"]  # token contract -> decimals() answer, None when it has none


def token_key(col: str = "token") -> pl.Expr:
    """The token column with native ether as ``"native"`` (null keys never match in a join)."""
    return pl.col(col).fill_null(NATIVE_KEY)


class DecimalsCache:
    """``decimals()`` answers per token, asked once: in memory, and in a JSON file when ``path`` is given.

    ``lookup`` reads a contract (the command line wires a JSON-RPC reader); a token with no answer is cached
    as ``None`` too, so a dead token is not asked again.
    """

    def __init__(self, lookup: DecimalsLookup, path: str | Path | None = None):
        self.lookup = lookup
        self.path = Path(path) if path else None
        self._known: dict[str, int | None] = {}
        if self.path and self.path.is_file():
            self._known = json.loads(self.path.read_text())

    def __call__(self, token: str) -> int | None:
        if token not in self._known:
            self._known[token] = self.lookup(token)
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self._known, indent=0, sort_keys=True))
                tmp.replace(self.path)
        return self._known[token]


def token_meta(keys: list[str], decimals: DecimalsLookup | None = None) -> pl.DataFrame:
    """One row per token key: ``tkey, known_symbol, decimals, decimals_source, priced``.

    Decimals: the contract's answer when ``decimals`` is given and answers, else the table, else unknown (raw).
    ``known_symbol`` is set only for native ether and table tokens (symbols a contract reports about itself are
    shown with the contract next to them, see :func:`token_label`).
    """
    rows = []
    for k in sorted(set(keys)):
        if k == NATIVE_KEY:
            rows.append((k, "ETH", 18, "native"))
            continue
        dec = decimals(k) if decimals is not None else None
        known = KNOWN_TOKENS.get(k)
        if dec is not None and 0 <= dec <= 255:
            rows.append((k, known[0] if known else None, dec, "contract"))
        elif known:
            rows.append((k, known[0], known[1], "table"))
        else:
            rows.append((k, None, None, "raw"))
    return pl.DataFrame(
        rows,
        schema={"tkey": pl.String, "known_symbol": pl.String, "decimals": pl.Int64, "decimals_source": pl.String},
        orient="row",
    )


def token_label(tkey: pl.Expr, known_symbol: pl.Expr, symbol: pl.Expr) -> pl.Expr:
    """``WETH`` for a table token or ether; ``FOO?0x1234…abcd`` for a contract naming itself; ``?0x1234…abcd``."""
    tail = pl.lit("?") + tkey.str.slice(0, 6) + pl.lit("…") + tkey.str.slice(-4)
    return pl.coalesce(known_symbol, symbol.fill_null("") + tail)


def hourly_prices(source: object) -> pl.DataFrame:
    """``tkey, hour, price`` for every priced token and every hour the lake has a 1h ``BASE/USDT`` candle.

    ``source``: a :class:`continuum.lake.Lake` (or anything with ``scan``); other sources have no candles.
    USDT is not listed: it is 1 at every hour (see the module docstring).
    """
    empty = pl.DataFrame(schema={"tkey": pl.String, "hour": pl.Int64, "price": pl.Float64})
    if not hasattr(source, "scan"):
        return empty
    bases: dict[str, list[str]] = {}
    for tkey in [NATIVE_KEY, *KNOWN_TOKENS]:
        if tkey in AT_PAR:
            continue
        base = PRICE_BASE.get(tkey) or KNOWN_TOKENS[tkey][0]
        bases.setdefault(f"{base}/{QUOTE}", []).append(tkey)
    lf = source.scan("candle")  # type: ignore[union-attr]
    if not {"symbol", "timeframe", "close", "ts"} <= set(lf.collect_schema().names()):
        return empty
    closes = (
        lf.filter((pl.col("timeframe") == "1h") & pl.col("symbol").is_in(list(bases)))
        .group_by("symbol", "ts")
        .agg(pl.col("close").median().alias("price"))
        .collect()
    )
    pairs = pl.DataFrame(
        [(sym, k) for sym, ks in bases.items() for k in ks],
        schema={"symbol": pl.String, "tkey": pl.String},
        orient="row",
    )
    return closes.join(pairs, on="symbol").select("tkey", pl.col("ts").cast(pl.Int64).alias("hour"), "price")


def priced(lf: pl.LazyFrame, prices: pl.DataFrame) -> pl.LazyFrame:
    """Transfers with ``tkey``, ``raw`` (exact amount as a float, null without ``raw_value``) and ``price``
    (USDT per token unit at the transfer's hour; null when unknown)."""
    return (
        lf.with_columns(
            token_key().alias("tkey"),
            (pl.col("ts") // HOUR_MS * HOUR_MS).alias("hour"),
            pl.col("raw_value").cast(pl.Float64, strict=False).alias("raw"),
        )
        .join(prices.lazy(), on=["tkey", "hour"], how="left")
        .with_columns(
            pl.when(pl.col("tkey").is_in(list(AT_PAR))).then(pl.lit(1.0)).otherwise(pl.col("price")).alias("price")
        )
    )


def edge_sums() -> list[pl.Expr]:
    """Aggregations per edge over :func:`priced` rows: exact-amount sum, stored-value sum, and price x amount
    sums (null as soon as one transfer of the edge has no price or no raw amount: no partial values)."""
    all_priced = pl.col("price").null_count() == 0
    all_raw = pl.col("raw").null_count() == 0
    return [
        pl.when(all_raw).then(pl.col("raw").sum()).alias("raw_sum"),
        pl.col("value").sum().alias("stored_sum"),
        pl.when(all_priced & all_raw).then((pl.col("raw") * pl.col("price")).sum()).alias("px_raw"),
        pl.when(all_priced).then((pl.col("value") * pl.col("price")).sum()).alias("px_stored"),
    ]


def in_units(raw: pl.Expr, given: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``(value, unit, decimals_source)`` on rows joined with :func:`token_meta`: ``raw`` (an exact amount as a
    float, or a sum of them) in token units where the decimals are known, in raw units where not (``unit =
    "raw"``), and ``given`` (a value taken as already scaled) where there is no exact amount."""
    scale = pl.lit(10.0).pow(pl.col("decimals"))
    has_raw = raw.is_not_null()
    known = pl.col("decimals").is_not_null()
    value = pl.when(has_raw & known).then(raw / scale).when(has_raw).then(raw).otherwise(given)
    unit = pl.when(has_raw & ~known).then(pl.lit("raw")).otherwise(pl.lit("token"))
    source = pl.when(~has_raw).then(pl.lit("given")).otherwise(pl.col("decimals_source"))
    return value, unit, source


def amounts(rows: pl.DataFrame, decimals: DecimalsLookup | None = None) -> pl.DataFrame:
    """Transfers (with ``tkey``, e.g. from :func:`priced`) with their own ``amount``, ``unit``, ``decimals``,
    ``decimals_source`` and ``token_label``: what min-value filters, thresholds and counterparty totals compare,
    rather than the stored ``value`` (an importer's 18-decimals guess for a token it did not know)."""
    meta = token_meta(rows["tkey"].unique().to_list(), decimals)
    value, unit, source = in_units(pl.col("raw_value").cast(pl.Float64, strict=False), pl.col("value"))
    return (
        rows.join(meta, on="tkey", how="left", maintain_order="left")
        .with_columns(
            value.alias("amount"),
            unit.alias("unit"),
            source.alias("decimals_source"),
            token_label(pl.col("tkey"), pl.col("known_symbol"), pl.col("symbol")).alias("token_label"),
        )
        .drop("known_symbol")
    )


def finish_edges(edges: pl.DataFrame, decimals: DecimalsLookup | None = None) -> pl.DataFrame:
    """Edge value and USD from the sums of :func:`edge_sums`, with each token's decimals resolved once.

    Adds ``tkey, token_label, value, unit ("token" | "raw"), decimals, decimals_source, usd``.
    """
    meta = token_meta(edges["tkey"].to_list(), decimals)
    e = edges.join(meta, on="tkey", how="left")
    scale = pl.lit(10.0).pow(pl.col("decimals"))
    has_raw = pl.col("raw_sum").is_not_null()
    value, unit, source = in_units(pl.col("raw_sum"), pl.col("stored_sum"))
    return e.with_columns(
        value.alias("value"),
        unit.alias("unit"),
        source.alias("decimals_source"),
        pl.when(has_raw & pl.col("decimals").is_not_null())
        .then(pl.col("px_raw") / scale)
        .when(~has_raw)
        .then(pl.col("px_stored"))
        .alias("usd"),
        token_label(pl.col("tkey"), pl.col("known_symbol"), pl.col("symbol")).alias("token_label"),
    ).drop("raw_sum", "stored_sum", "px_raw", "px_stored", "known_symbol")
