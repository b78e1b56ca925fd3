"""How long ``trace``, ``counterparties`` and ``alerts`` take on the Spark engine, beside the polars engine.

On an existing lake (``--lake DIR``, e.g. one written by bench/forensics_scale.py) or, without one, on a lake this
script generates: ``--transfers N`` (default 1M) over a power-law address graph (Zipf-like out- and in-degrees, so
a few hubs touch most transfers, as exchanges do on mainnet), native ether and table tokens plus a tail of unknown
ones, 90 days of timestamps and the matching ETH/USDT 1h candles, written through :class:`continuum.lake.Lake`
(the layout every engine reads). Roots: the busiest sender (a hub) and a median one.

Each query runs twice on one session: ``cold`` includes the JVM's warm-up and the first Parquet scan, ``warm`` is
what the next query of an analyst's session costs. The polars engine runs the same queries on the same lake.

    python bench/forensics_spark.py                           # 1M generated transfers, local[2]
    python bench/forensics_spark.py --transfers 10M --driver-memory 6g
    python bench/forensics_spark.py --lake /data/lake --master spark://host:7077
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from continuum.lake import Lake  # noqa: E402
from continuum.schema import Candle  # noqa: E402
from forensics import queries, spark_engine  # noqa: E402
from forensics.values import KNOWN_TOKENS  # noqa: E402

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
DAYS, HOUR = 90, 3_600_000


def _count(text: str) -> int:
    """``1M`` / ``250k`` / ``1000000``."""
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def generate(root: Path, n: int, seed: int = 1) -> Lake:
    """``n`` transfers over ``max(1000, n/20)`` addresses with power-law degrees, and 90 days of ETH/USDT candles."""
    rng = np.random.default_rng(seed)
    n_addr = max(1_000, n // 20)
    rank_weight = 1.0 / np.arange(1, n_addr + 1) ** 1.1
    rank_weight /= rank_weight.sum()
    addresses = pl.Series([f"0x{i:040x}" for i in rng.permutation(n_addr) + 1])
    frm = rng.choice(n_addr, size=n, p=rank_weight)
    to = rng.permutation(n_addr)[rng.choice(n_addr, size=n, p=rank_weight)]  # hubs of receiving are others
    # tokens: ether, the table's tokens, and 200 unknown contracts (raw units, never priced)
    table = [(c, s, d) for c, (s, d) in KNOWN_TOKENS.items()]
    unknown = [(f"0x{0xE000 + i:040x}", f"T{i}", 18) for i in range(200)]
    kinds = [(None, "ETH", 18), *table, *unknown]
    p = np.array([0.4] + [0.45 / len(table)] * len(table) + [0.15 / len(unknown)] * len(unknown))
    pick = rng.choice(len(kinds), size=n, p=p / p.sum())
    decimals = np.array([k[2] for k in kinds])[pick]
    mantissa = rng.lognormal(0.0, 2.0, size=n)  # whole-token amounts, heavy-tailed
    raw = [str(int(m * 10**6)) + "0" * (int(d) - 6) for m, d in zip(mantissa, decimals, strict=True)]
    ts = np.sort(T0 + rng.integers(0, DAYS * 24 * HOUR, size=n))
    df = pl.DataFrame(
        {
            "chain": "ethereum",
            "block_number": (ts - T0) // 12_000,
            "ts": ts,
            "log_index": np.where(pick == 0, -1, rng.integers(0, 200, size=n)),
            "token": pl.Series([kinds[i][0] for i in pick], dtype=pl.String),
            "symbol": pl.Series([kinds[i][1] for i in pick], dtype=pl.String),
            "from_address": addresses.gather(frm),
            "to_address": addresses.gather(to),
            "value": np.floor(mantissa * 10**6) / 10**6,
            "raw_value": pl.Series(raw, dtype=pl.String),
        }
    ).with_columns(
        pl.format("0x{}", (pl.col("ts") // 12_000).cast(pl.String).str.zfill(64)).alias("block_hash"),
        pl.format("0x{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(64)).alias("tx_hash"),
    )
    df = df.filter(pl.col("from_address") != pl.col("to_address"))
    lake = Lake(root)
    lake.append("transfer", df)
    price = 2300.0 * np.exp(np.cumsum(rng.normal(0, 0.006, size=DAYS * 24)))
    lake.append_events(
        Candle("binance", "ETH/USDT", "1h", T0 + h * HOUR, float(c), float(c) * 1.01, float(c) * 0.99, float(c), 1.0)
        for h, c in enumerate(price)
    )
    return lake


def _roots(lake: Lake) -> dict[str, str]:
    """The busiest sender (a hub) and the median sender among those with at least 3 transfers."""
    degree = (
        lake.scan("transfer").group_by("from_address").len().sort(["len", "from_address"], descending=[True, False])
    )
    degree = degree.collect()
    mid = degree.filter(pl.col("len") >= 3)
    return {"hub": degree["from_address"][0], "median": mid["from_address"][mid.height // 2]}


def _time(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _size(out: object) -> int:
    return out.edges.height if isinstance(out, queries.Trace) else out.height  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", help="an existing lake (kind=transfer/...); default: generate one")
    ap.add_argument("--transfers", default="1M", help="transfers to generate without --lake (default 1M)")
    ap.add_argument("--master", default=None, help="Spark master (default: $SPARK_MASTER, else local[2])")
    ap.add_argument("--driver-memory", default=None, help="driver heap for a local master (default 2g)")
    ap.add_argument("--no-polars", action="store_true", help="time the Spark engine only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "forensics_spark.json"))
    args = ap.parse_args()

    load_before = os.getloadavg()
    tmp = None
    if args.lake:
        lake = Lake(args.lake)
        generated = None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="forensics-spark-")
        n = _count(args.transfers)
        gen_s, lake = _time(lambda: generate(Path(tmp.name) / "lake", n))
        generated = {"transfers": n, "generate_s": round(gen_s, 1)}
        print(f"generated {n:,} transfers in {gen_s:.1f}s under {lake.root}", flush=True)
    rows = lake.scan("transfer").select(pl.len()).collect().item()
    files = len(list(Path(lake.root).glob("kind=transfer/**/*.parquet")))
    roots = _roots(lake)

    if args.driver_memory:
        os.environ["SPARK_DRIVER_MEMORY"] = args.driver_memory
    from forensics.spark_session import session

    start_s, spark = _time(lambda: session(args.master))
    master = spark.sparkContext.master
    print(f"Spark {spark.version} on {master}: session in {start_s:.1f}s; {rows:,} transfers in {files} files")

    queries_ = {
        "trace hub out 1 hop": dict(kind="trace", address=roots["hub"], hops=1, direction="out"),
        "trace hub out 2 hops": dict(kind="trace", address=roots["hub"], hops=2, direction="out"),
        "trace median out 3 hops": dict(kind="trace", address=roots["median"], hops=3, direction="out"),
        "trace median both 2 hops": dict(kind="trace", address=roots["median"], hops=2, direction="both"),
        "trace median both 2 hops, cached": dict(
            kind="trace", address=roots["median"], hops=2, direction="both", spark_kw={"cache": True}
        ),
        "counterparties hub": dict(kind="counterparties", address=roots["hub"]),
        "alerts (all rules, all time)": dict(kind="alerts"),
    }
    results = []
    for name, q in queries_.items():
        kw = {k: v for k, v in q.items() if k not in ("kind", "spark_kw")}
        skw = {**kw, **q.get("spark_kw", {})}  # type: ignore[dict-item]
        engines: dict[str, Callable[[], object]] = {
            "spark": lambda q=q, skw=skw: getattr(spark_engine, q["kind"])(lake, spark=spark, **skw),
        }
        if not args.no_polars and "spark_kw" not in q:
            engines["polars"] = lambda q=q, kw=kw: getattr(queries, q["kind"])(lake, **kw)
        row: dict[str, object] = {"query": name}
        for engine, run in engines.items():
            cold, out = _time(run)
            warm, _ = _time(run)
            row |= {f"{engine}_cold_s": round(cold, 2), f"{engine}_warm_s": round(warm, 2), "rows": _size(out)}
        results.append(row)
        print(json.dumps(row), flush=True)

    report = {
        "what": "forensics queries on the Spark engine (local mode unless --master) beside the polars engine",
        "lake": args.lake or "generated",
        "generated": generated,
        "transfers": rows,
        "files": files,
        "roots": roots,
        "spark": {"version": spark.version, "master": master, "session_start_s": round(start_s, 1)},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
    }
    spark.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
