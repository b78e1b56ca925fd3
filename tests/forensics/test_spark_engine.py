"""The Spark engine (``--engine spark``) answers exactly as the polars engine on the same lake.

Two lakes: the real mainnet sample (291 token transfers and the ETH payments of blocks 17173049-17173050, with the
bundled Binance ETH/USDT candles so edges carry USDT values) and a generated one built to reach every branch of a
trace: several hops through labelled exchanges, a mixer, sanctioned, exploit and phishing addresses; native ether,
priced table tokens (WETH, USDT), an unpriced one (USDC) and an unknown token in raw units; two months (two
partition files), an hour without a candle, a month of ether only (its ``token`` column is all null in the file)
and a file written without ``raw_value``. Spark runs in local mode, one session for the module.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from commands.cli import main
from continuum.lake import Lake
from continuum.schema import Candle
from forensics import queries, spark_engine
from tests.forensics.test_values import mainnet_lake

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MAINNET_ROOT = "0x7054b0f980a7eb5b3a6b3446f3c947d80162775c"
BUSY = "0xef1c6e67703c7bd7107eed8303fbe6ec2554bf6b"  # the busiest WETH address of the sample

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
ODD = "0x" + "7" * 40  # a token no table knows: its amounts stay in raw units
TOKENS = [(None, "ETH", 18), (WETH, "WETH", 18), (USDT, "USDT", 6), (USDC, "USDC", 6), (ODD, "ODD", 9)]
USERS = [f"0x{i:040x}" for i in range(1, 41)]
EXCHANGE, MIXER, SANCTIONED, EXPLOIT, PHISHING, BRIDGE = (f"0x{c * 40}" for c in "abcdef")
LABELS = pl.DataFrame(
    {
        "address": [EXCHANGE, MIXER, SANCTIONED, EXPLOIT, PHISHING, BRIDGE, USERS[7]],
        "name": ["Some Exchange", "Tornado.Cash: 1 ETH", "Lazarus", "Exploiter 1", "Fake_Phishing1", "Bridge", "Bob"],
        "category": ["exchange", "mixer", "sanctioned", "exploit", "phishing", "bridge", "other"],
        "source": ["test"] * 7,
    }
)
T0 = int(datetime(2024, 2, 28, tzinfo=UTC).timestamp() * 1000)  # two days later it is March: two partitions
HOUR = 3_600_000
ROOT = USERS[0]


def _generated(seed: int = 7) -> tuple[pl.DataFrame, list[Candle]]:
    """~400 transfers over 72 hours: a random graph where USERS[0] pays first and money spreads over hops."""
    rng = random.Random(seed)
    everyone = USERS + [EXCHANGE, MIXER, SANCTIONED, EXPLOIT, PHISHING, BRIDGE]
    rows: list[dict] = []
    for i in range(400):
        frm = ROOT if i < 12 else rng.choice(USERS[: 1 + min(39, i // 8)] + [EXCHANGE, MIXER])
        to = rng.choice(everyone)
        token, symbol, dec = rng.choice(TOKENS) if i % 9 else TOKENS[0]
        raw = rng.randrange(10**dec // 1000, 300 * 10**dec)
        rows.append(
            {
                "chain": "ethereum",
                "block_number": 19_000_000 + i,
                "block_hash": f"0x{i:064x}",
                # every fourth transfer in the block of the one before: equal times test the bounds' edges
                "ts": rows[-1]["ts"] if i % 4 == 3 else T0 + i * 650_000 + rng.randrange(0, 600_000),
                "tx_hash": f"0x{i + 1:064x}",
                "log_index": -1 if token is None else rng.randrange(0, 50),
                "token": token,
                "symbol": symbol,
                "from_address": frm,
                "to_address": to,
                # like ethereum-etl's importer: an unknown token's value guessed with 18 decimals
                "value": raw / 10 ** (18 if token == ODD else dec),
                "raw_value": str(raw),
            }
        )
    candles = [
        Candle(ex, "ETH/USDT", "1h", T0 + h * HOUR, 3000.0, 4000.0, 2000.0, 3000.0 + 7 * h + k, 10.0)
        for h in range(80)
        if h != 5  # an hour without a candle: ether moved then has no USDT value
        for k, ex in enumerate(("binance", "kraken", "okx"))
    ]
    return pl.DataFrame(rows, schema_overrides={"token": pl.String}), candles


@pytest.fixture(scope="module")
def spark():
    from forensics.spark_session import session

    # a JVM that lives for one test module: the quick JIT only and one GC thread (measured here: 40% less CPU)
    s = session(conf={"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("generated"))
    df, candles = _generated()
    lake.append("transfer", df)
    lake.append_events(candles)
    # an older month of ether only, written by an importer that kept no raw amounts: token is all null there
    t_old = int(datetime(2024, 1, 15, tzinfo=UTC).timestamp() * 1000)
    old = pl.DataFrame(
        {
            "chain": ["ethereum"] * 3,
            "block_number": [1, 2, 3],
            "block_hash": [f"0x{9:064x}"] * 3,
            "ts": [t_old, t_old + 1, t_old + 2],
            "tx_hash": [f"0x{0xF00 + i:064x}" for i in range(3)],
            "log_index": [-1, -1, -1],
            "token": [None, None, None],
            "symbol": ["ETH"] * 3,
            "from_address": [USERS[3], ROOT, MIXER],
            "to_address": [ROOT, USERS[4], USERS[3]],
            "value": [2.0, 1.5, 0.5],
        }
    )
    lake.append("transfer", old)
    assert len(list(lake.root.glob("kind=transfer/**/data.parquet"))) == 3
    return lake


@pytest.fixture(scope="module")
def mainnet(tmp_path_factory) -> Lake:
    return mainnet_lake(tmp_path_factory.mktemp("mainnet"))


def _same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Same columns, types, rows and values, in any row order (floats to 1e-9: Spark adds in another order)."""
    assert got.columns == want.columns
    keys = [c for c, t in want.schema.items() if not t.is_float() and not isinstance(t, pl.List)]
    assert_frame_equal(got.sort(keys, nulls_last=True), want.sort(keys, nulls_last=True), rel_tol=1e-9, abs_tol=1e-12)


def _same_trace(got: queries.Trace, want: queries.Trace) -> None:
    assert (got.root, got.direction, got.hops) == (want.root, want.direction, want.hops)
    _same(got.nodes, want.nodes)
    _same(got.edges, want.edges)
    _same(got.totals, want.totals)


# every direction and every hop count from 1 to 3 (with the cases below: "both" over 1 and 2 hops), not every
# pair: each hop is a Spark job, and the test must stay quick in CI
@pytest.mark.parametrize(("direction", "hops"), [("out", 1), ("out", 3), ("in", 2), ("in", 3), ("both", 3)])
def test_trace_equals_polars(spark, generated, direction, hops):
    want = queries.trace(generated, ROOT, hops=hops, direction=direction, labels=LABELS)
    got = spark_engine.trace(generated, ROOT, hops=hops, direction=direction, labels=LABELS, spark=spark)
    _same_trace(got, want)
    assert want.nodes["hop"].max() == hops and want.edges["token_label"].n_unique() >= 3
    if hops == 3:  # the comparison has teeth: labelled risk, several tokens, raw units, priced and unpriced edges
        assert want.flagged.height > 0 and set(want.edges["unit"]) == {"token", "raw"}
        assert want.edges["usd"].null_count() > 0 and want.edges["usd"].drop_nulls().len() > 0


def test_trace_options_equal_polars(spark, generated):
    cases = [
        dict(hops=3, stop_at=(), time_respecting=False, top=3),  # through services, any order, a tight cap
        dict(hops=2, direction="both", token="WETH"),
        dict(hops=1, direction="both", min_value=50.0, start=datetime(2024, 2, 28, 12, tzinfo=UTC)),
    ]
    for kw in cases:
        want = queries.trace(generated, ROOT, labels=LABELS, **kw)
        got = spark_engine.trace(generated, ROOT, labels=LABELS, spark=spark, **kw)
        _same_trace(got, want)
        assert want.edges.height > 1, kw
    # an address with no transfers: the root alone, no edges, on both engines
    nobody = "0x" + "5" * 40
    _same_trace(spark_engine.trace(generated, nobody, spark=spark), queries.trace(generated, nobody))


def test_trace_on_mainnet_equals_polars(spark, mainnet):
    want = queries.trace(mainnet, BUSY, hops=2, direction="both")
    got = spark_engine.trace(str(mainnet.root), BUSY, hops=2, direction="both", spark=spark)
    _same_trace(got, want)
    assert want.edges.height > 10 and want.edges["usd"].drop_nulls().len() > 0


def test_counterparties_equal_polars(spark, generated, mainnet):
    for lake, address, kw in [
        (generated, ROOT, {}),
        (generated, USERS[3], {"by": "count", "limit": None}),
        (generated, EXCHANGE, {"token": "USDT", "limit": 5}),
        (mainnet, MAINNET_ROOT, {}),
        (mainnet, BUSY, {"token": "WETH"}),
    ]:
        labels = LABELS if lake is generated else None
        want = queries.counterparties(lake, address, labels=labels, **kw)
        got = spark_engine.counterparties(lake, address, labels=labels, spark=spark, **kw)
        assert got.columns == want.columns and got.height == want.height > 0, (address, kw)
        assert_frame_equal(got, want, rel_tol=1e-9)  # in rank order: the ranking itself must agree


def test_alerts_equal_polars(spark, generated, mainnet):
    kw = dict(large={"ETH": 250.0, "USDT": 100.0}, watch=(USERS[5],), labels=LABELS)
    want = queries.alerts(generated, **kw)
    got = spark_engine.alerts(generated, spark=spark, **kw)
    assert set(want["rule"]) == {"sanctioned", "mixer_deposit", "mixer_withdrawal", "exploit", "phishing"} | {
        "large",
        "watch",
    }
    _same(got, want)
    some = dict(rules=("sanctioned", "large"), start=datetime(2024, 3, 1, tzinfo=UTC), token="ETH", labels=LABELS)
    _same(spark_engine.alerts(generated, spark=spark, **some), queries.alerts(generated, **some))
    # the real sample with the shipped labels: the 600,321.88 USDT transfer is a large hit on both engines
    want = queries.alerts(mainnet)
    _same(spark_engine.alerts(mainnet, spark=spark), want)
    assert "large" in set(want["rule"])


def test_cli_engine_spark_answers_as_polars(spark, mainnet, capsys):
    root = str(mainnet.root)
    for argv in (["counterparties", BUSY, "--token", "WETH"], ["trace", BUSY, "--show", "edges"], ["alerts"]):
        out = {}
        for engine in ("polars", "spark"):
            assert main([*argv, "--lake", root, "--engine", engine, "--format", "json", "--limit", "0"]) == 0
            out[engine] = json.loads(capsys.readouterr().out)

        def key(row: dict) -> str:
            return json.dumps({k: v for k, v in row.items() if not isinstance(v, float)}, sort_keys=True)

        def floats(rows: list[dict]) -> list[float]:
            return [v for r in rows for v in r.values() if isinstance(v, float)]

        want, got = sorted(out["polars"], key=key), sorted(out["spark"], key=key)
        assert len(want) > 0 and [key(r) for r in got] == [key(r) for r in want], argv
        assert floats(got) == pytest.approx(floats(want), rel=1e-9), argv


def test_missing_pyspark_is_one_line_exit_2(mainnet, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what `import pyspark` meets where it is not installed
    assert main(["counterparties", BUSY, "--lake", str(mainnet.root), "--engine", "spark"]) == 2
    err = capsys.readouterr().err
    assert err == "continuum: error: --engine spark needs pyspark: pip install 'continuum[spark]'\n"
    assert main(["trace", BUSY, "--lake", str(mainnet.root), "--spark-master", "local[1]"]) == 2
    assert "--spark-master needs --engine spark" in capsys.readouterr().err
    # what only the polars engine does says so, before any Spark starts
    assert main(["trace", BUSY, "--lake", str(mainnet.root), "--engine", "spark", "--collapse-clusters"]) == 2
    assert "--collapse-clusters runs on the polars engine" in capsys.readouterr().err
    assert main(["alerts", "--lake", str(mainnet.root), "--engine", "spark", "--follow"]) == 2
    assert "--follow and --send-test run on this machine" in capsys.readouterr().err


def test_help_and_the_polars_engine_never_import_pyspark(mainnet):
    code = (
        "import sys, contextlib, io; from commands.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['counterparties', '{BUSY}', '--lake', {str(mainnet.root)!r}]) == 0\n"
        "    try: main(['trace', '--help'])\n"
        "    except SystemExit: pass\n"
        "print('pyspark' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
