"""Per-token totals, decimals and USDT values on the real mainnet sample, against answers computed here by hand
from the raw ethereum-etl rows and the real Binance 1h candles (data/binance), independently of forensics.values.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from continuum.errors import UserError
from continuum.lake import Lake
from continuum.schema import Candle
from forensics.etl_import import read_export
from forensics.queries import alerts, counterparties, trace
from forensics.values import DecimalsCache

REPO = Path(__file__).resolve().parents[2]
BLOCKS = REPO / "tests" / "data" / "ethereum_etl_mainnet_samples" / "blocks_17173049_17173050"
ETH_CANDLES = REPO / "data" / "binance" / "ETH_USDT-1h.parquet"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
# decimals() of the major tokens, as their mainnet contracts answer (Etherscan "Read Contract")
KNOWN_DECIMALS = {
    WETH: 18,
    USDT: 6,
    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": 6,  # USDC
    "0x6b175474e89094c44da98b954eedeac495271d0f": 18,  # DAI
    "0x2260fac5e5542a773aa44fbcfedf7c193bc2c599": 8,  # WBTC
    "0xae7ab96520de3a18e5e111b5eaab095312d7fe84": 18,  # stETH
    "0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0": 18,  # wstETH
    "0x514910771af9ca656af840dff83e8264ecf986ca": 18,  # LINK
    "0x1f9840a85d5af5bf1d1762f925bdaddc4201f984": 18,  # UNI
}
NODE = "0x64a018b23b4d7a077dffa6723462bc722861c5ad"  # the issue's node: an unknown token in, 7.4 ETH out
ROOT = "0x7054b0f980a7eb5b3a6b3446f3c947d80162775c"
MEV = "0xa69babef1ca67a37ffaf7a485dfff3382056e78c"  # sends the sample's one 600,321.88 USDT transfer
LABEL_SCHEMA = {"address": pl.String, "name": pl.String, "category": pl.String, "source": pl.String}


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (BLOCKS / name).read_text().splitlines() if line.strip()]


def _raw_moves() -> list[tuple[str, str, str, int, int]]:
    """(token or 'ETH', from, to, raw amount, unix time) for every token transfer and successful ETH payment."""
    moves = [
        (r["token_address"], r["from_address"], r["to_address"], int(r["value"]), int(r["block_timestamp"]))
        for r in _jsonl("token_transfers.jsonl")
    ]
    moves += [
        ("ETH", r["from_address"], r["to_address"], int(r["value"]), int(r["block_timestamp"]))
        for r in _jsonl("transactions.jsonl")
        if int(r["value"]) > 0 and r["to_address"] and r["receipt_status"] == 1
    ]
    return moves


def _eth_close(unix: int) -> float:
    """Binance's ETH/USDT close of the hour ``unix`` falls in, read straight from the bundled file."""
    hour = unix // 3600 * 3600
    df = pl.read_parquet(ETH_CANDLES).filter(pl.col("date").dt.epoch("s") == hour)
    assert df.height == 1
    return df["close"][0]


def mainnet_lake(root: Path) -> Lake:
    """The bundled two mainnet blocks (JSON-lines export: it has receipt statuses) and Binance's ETH/USDT 1h
    candles of that day, in a lake at ``root``: the case whose values are worked out by hand here."""
    lake = Lake(root)
    lake.append_events(read_export(BLOCKS))
    day = pl.read_parquet(ETH_CANDLES).filter(pl.col("date").dt.date() == pl.date(2023, 5, 2))
    lake.append_events(
        Candle(
            "binance",
            "ETH/USDT",
            "1h",
            int(r["date"].timestamp() * 1000),
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
        )  # fmt: skip
        for r in day.iter_rows(named=True)
    )
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return mainnet_lake(tmp_path_factory.mktemp("lake"))


def _by_hand(address: str) -> dict[str, dict[str, float | None]]:
    """Per token: amount in and out of ``address`` (decimals applied where known, raw otherwise) and USDT."""
    out: dict[str, dict[str, float | None]] = defaultdict(
        lambda: {"in": 0.0, "out": 0.0, "usd_in": 0.0, "usd_out": 0.0}
    )
    raw_sum: dict[tuple[str, str], int] = defaultdict(int)
    for token, frm, to, raw, unix in _raw_moves():
        if frm == to or address not in (frm, to):
            continue
        side = "out" if frm == address else "in"
        raw_sum[(token, side)] += raw
        dec = 18 if token == "ETH" else KNOWN_DECIMALS.get(token)
        usd = None
        if token in ("ETH", WETH):
            usd = raw / 10**18 * _eth_close(unix)
        elif token == USDT:
            usd = raw / 10**6
        cur = out[token]
        cur[f"usd_{side}"] = None if usd is None or cur[f"usd_{side}"] is None else cur[f"usd_{side}"] + usd
    for (token, side), raw in raw_sum.items():
        dec = 18 if token == "ETH" else KNOWN_DECIMALS.get(token)
        out[token][side] = raw / 10**dec if dec is not None else float(raw)
    return dict(out)


def _totals(t, address: str) -> dict[str, dict]:
    rows = t.totals.filter(pl.col("address") == address).to_dicts()
    return {r["token"] or "ETH": r for r in rows}


@pytest.mark.parametrize("address", [NODE, ROOT, MEV])
def test_per_token_totals_and_usd_by_hand(lake, address):
    want = _by_hand(address)
    got = _totals(trace(lake, address, hops=1, direction="both"), address)
    assert set(got) == set(want)
    for token, w in want.items():
        g = got[token]
        assert g["value_in"] == pytest.approx(w["in"], rel=1e-12) and g["value_out"] == pytest.approx(
            w["out"], rel=1e-12
        )
        for side in ("in", "out"):
            if w[side] == 0:
                continue
            if w[f"usd_{side}"] is None or token not in ("ETH", WETH, USDT):
                assert g[f"usd_{side}"] is None, (token, side)
            else:
                assert g[f"usd_{side}"] == pytest.approx(w[f"usd_{side}"], rel=1e-12), (token, side)
        assert g["unit"] == ("token" if token in ("ETH", *KNOWN_DECIMALS) else "raw")


def test_the_issue_node_no_longer_mixes_tokens(lake):
    t = trace(lake, NODE, hops=1, direction="both")
    node = t.nodes.filter(pl.col("address") == NODE).row(0, named=True)
    (unknown, raw), = [(tok, raw) for tok, _, to, raw, _ in _raw_moves() if to == NODE and tok != "ETH"]  # fmt: skip
    assert (
        node["value_in"] == float(raw) and node["token_in"].endswith("(raw units)") and unknown[-4:] in node["token_in"]
    )
    assert node["usd_in"] is None and node["unpriced_in"] == 1
    wei = sum(raw for tok, frm, _, raw, _ in _raw_moves() if frm == NODE and tok == "ETH")
    assert node["token_out"] == "ETH" and node["value_out"] == pytest.approx(wei / 1e18) == pytest.approx(7.4)
    t_out = [unix for tok, frm, _, _, unix in _raw_moves() if frm == NODE and tok == "ETH"][0]
    assert node["usd_out"] == pytest.approx(wei / 1e18 * _eth_close(t_out), rel=1e-12)
    # a spoofed symbol is no evidence: the unknown token is never priced, whatever the contract calls itself
    assert t.edges.filter(pl.col("token") == unknown)["usd"].to_list() == [None]


def test_decimals_from_the_contract_win_and_are_cached(lake, tmp_path):
    (unknown, raw), = [(tok, raw) for tok, _, to, raw, _ in _raw_moves() if to == NODE and tok != "ETH"]  # fmt: skip
    asked: list[str] = []

    def contract(token: str) -> int | None:
        asked.append(token)
        return 9 if token == unknown else None  # e.g. WETH's node did not answer: the table's 18 is used

    cache = DecimalsCache(contract, tmp_path / "decimals.json")
    t = trace(lake, NODE, hops=1, direction="both", decimals=cache)
    tot = _totals(t, NODE)[unknown]
    assert (
        tot["value_in"] == pytest.approx(raw / 1e9) and tot["unit"] == "token" and tot["decimals_source"] == "contract"
    )
    trace(lake, NODE, hops=1, direction="both", decimals=cache)
    assert asked.count(unknown) == 1  # asked once
    again = DecimalsCache(lambda _t: pytest.fail("read from the file, not the chain"), tmp_path / "decimals.json")
    assert again(unknown) == 9


def _raw_rows() -> list[dict]:
    """Every token transfer and successful ETH payment as (tx, log, token or 'ETH', from, to, raw, unix)."""
    rows = [
        {"tx": r["transaction_hash"], "log": r["log_index"], "token": r["token_address"], "from": r["from_address"],
         "to": r["to_address"], "raw": int(r["value"]), "unix": int(r["block_timestamp"])}
        for r in _jsonl("token_transfers.jsonl")
    ]  # fmt: skip
    rows += [
        {"tx": r["hash"], "log": -1, "token": "ETH", "from": r["from_address"], "to": r["to_address"],
         "raw": int(r["value"]), "unix": int(r["block_timestamp"])}
        for r in _jsonl("transactions.jsonl")
        if int(r["value"]) > 0 and r["to_address"] and r["receipt_status"] == 1
    ]  # fmt: skip
    return rows


def _units(token: str, raw: int) -> float:
    """The amount an analyst reads: token units where the decimals are known, raw units where not."""
    dec = 18 if token == "ETH" else KNOWN_DECIMALS.get(token)
    return raw / 10**dec if dec is not None else float(raw)


@pytest.mark.parametrize("address", [NODE, ROOT, MEV])
@pytest.mark.parametrize("min_value", [0.0, 1.0])
def test_counterparties_per_token_amounts_by_hand(lake, address, min_value):
    want: dict[tuple[str, str], dict] = defaultdict(lambda: {"in": 0.0, "out": 0.0, "n_in": 0, "n_out": 0})
    for r in _raw_rows():
        if r["from"] == r["to"] or address not in (r["from"], r["to"]) or _units(r["token"], r["raw"]) < min_value:
            continue
        side, cp = ("out", r["to"]) if r["from"] == address else ("in", r["from"])
        w = want[(cp, r["token"])]
        w[side] += _units(r["token"], r["raw"])
        w[f"n_{side}"] += 1
    cp = counterparties(lake, address, limit=None, min_value=min_value)
    got = {(r["counterparty"], r["token"] or "ETH"): r for r in cp.iter_rows(named=True)}
    assert set(got) == set(want) and want
    for k, w in want.items():
        g = got[k]
        assert (g["value_in"], g["value_out"]) == (
            pytest.approx(w["in"], rel=1e-12),
            pytest.approx(w["out"], rel=1e-12),
        )
        assert (g["count_in"], g["count_out"]) == (w["n_in"], w["n_out"])
        assert g["unit"] == ("token" if k[1] == "ETH" or k[1] in KNOWN_DECIMALS else "raw")


def test_counterparty_usd_by_hand(lake):
    cp = counterparties(lake, NODE, token="ETH", limit=None)
    for r in cp.iter_rows(named=True):
        moves = [m for m in _raw_rows() if m["token"] == "ETH" and m["from"] == NODE and m["to"] == r["counterparty"]]
        assert r["usd_out"] == pytest.approx(sum(m["raw"] / 1e18 * _eth_close(m["unix"]) for m in moves), rel=1e-12)


def test_large_alerts_compare_per_token_amounts_by_hand(lake):
    (unknown,) = {m["token"] for m in _raw_rows() if m["to"] == NODE and m["token"] != "ETH"}
    thresholds = {"USDT": 1000.0, "WETH": 1.0, "ETH": 1.0, "USDC": 1000.0, unknown: 1e20}
    keyed = {USDT: 1000.0, WETH: 1.0, "ETH": 1.0, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": 1000.0, unknown: 1e20}
    want = {
        (m["tx"], m["log"]): _units(m["token"], m["raw"])
        for m in _raw_rows()
        if m["token"] in keyed and _units(m["token"], m["raw"]) >= keyed[m["token"]]
    }
    hits = alerts(lake, rules=("large",), large=thresholds, labels=pl.DataFrame(schema=LABEL_SCHEMA))
    got = {(r["tx_hash"], r["log_index"]): r["value"] for r in hits.iter_rows(named=True)}
    assert set(got) == set(want) and len(want) > 3
    assert all(got[k] == pytest.approx(v, rel=1e-12) for k, v in want.items())
    # the unknown token's amounts are raw units (decimals unknown), not the importer's raw / 1e18
    assert set(hits.filter(pl.col("token") == unknown)["unit"]) <= {"raw"}
    with pytest.raises(UserError, match="contract address"):
        alerts(lake, rules=("large",), large={"PEPE": 1.0})  # a self-declared symbol is no evidence


def test_watch_alerts_read_both_sorted_copies(lake):
    hits = alerts(lake, rules=("watch",), watch=(NODE,), labels=pl.DataFrame(schema=LABEL_SCHEMA))
    want = {(m["tx"], m["log"]) for m in _raw_rows() if NODE in (m["from"], m["to"])}
    assert set(zip(hits["tx_hash"], hits["log_index"], strict=True)) == want and len(want) >= 2


def test_trace_min_value_is_per_token_amount_by_hand(lake):
    # NODE receives ~1.5e29 raw units of a token of unknown decimals (stored by the importer as ~1.5e11, its
    # 18-decimals guess) and sends 7.4 ETH: min_value 1e12 keeps the token edge (raw units, as shown), drops ETH
    want = {
        (m["from"], m["to"], m["token"])
        for m in _raw_rows()
        if NODE in (m["from"], m["to"]) and m["from"] != m["to"] and _units(m["token"], m["raw"]) >= 1e12
    }
    t = trace(lake, NODE, hops=1, direction="both", min_value=1e12)
    got = {(r["source"], r["target"], r["token"] or "ETH") for r in t.edges.iter_rows(named=True)}
    assert got == want and len(want) == 1 and next(iter(want))[2] not in ("ETH", *KNOWN_DECIMALS)
