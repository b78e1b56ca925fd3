"""Forensics at mainnet scale: trace, counterparties and alerts on a synthetic power-law transfer graph of N
transfers, against the same queries in DuckDB SQL on the same Parquet files, with the answers checked to agree.

The graph (:mod:`bench.forensics_graph`) is written through the lake's own write path (``Lake.append`` in
time-ordered chunks, so the sorted runs and their compaction are what ingest builds). Then, for ``--starts``
start addresses from hubs down to the tail of the degree distribution: ``trace`` 1..``--hops`` hops forward
and backward (polars, :func:`forensics.queries.trace`, with hubs labelled as exchanges, where traces stop by
default) and the DuckDB version (:mod:`bench.forensics_duckdb`); ``counterparties`` of each start; ``alerts``
over the whole range. Times are wall-clock per call, p50/p95 over the starts; peak RSS of the process.

    python bench/forensics_scale.py --transfers 10M [--out /data/bench_lake] [--reuse] [--hops 4] [--starts 24]

Not part of the test suite (minutes to hours, gigabytes of disk). Results: ``bench/results/forensics_scale_<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.forensics_duckdb import DuckForensics  # noqa: E402
from bench.forensics_graph import T0_MS, TOKENS, Graph  # noqa: E402
from continuum.lake import Lake  # noqa: E402
from forensics.queries import DEFAULT_STOP_CATEGORIES, alerts, counterparties, large_thresholds, trace  # noqa: E402
from forensics.values import NATIVE_KEY, token_meta  # noqa: E402


def count(text: str) -> int:
    """``10M`` -> 10_000_000, ``250k`` -> 250_000."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1], 1)
    return int(float(t[:-1] if t[-1] in "kmg" else t) * scale)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def stats(seconds: list[float]) -> dict:
    s = np.array(seconds) * 1000
    return {"n": len(s), "p50_ms": float(np.percentile(s, 50)), "p95_ms": float(np.percentile(s, 95)),
            "max_ms": float(s.max())}  # fmt: skip


def write_lake(g: Graph, root: Path, chunk_rows: int) -> dict:
    """Generate and append chunk by chunk; returns seconds spent generating and appending (lake write path)."""
    lake = Lake(root)
    t0 = time.perf_counter()
    gen = write = 0.0
    chunks = g.chunks(chunk_rows)
    for i in range(1_000_000):
        dt, chunk = timed(next, chunks, None)
        if chunk is None:
            break
        gen += dt
        dt, _ = timed(lake.append, "transfer", chunk)
        write += dt
        print(f"  chunk {i + 1}: {chunk.height:,} rows, generate {gen:.0f} s, append {write:.0f} s, "
              f"peak RSS {rss_mb():,.0f} MB", flush=True)  # fmt: skip
    return {"generate_s": gen, "append_s": write, "write_total_s": time.perf_counter() - t0}


def lake_files(root: Path) -> tuple[list[str], list[str], int]:
    data = sorted(root.rglob("data.parquet"))
    to = [f.parent / "by_to_address.parquet" for f in data]
    size = sum(f.stat().st_size for f in [*data, *to])
    return [str(f) for f in data], [str(f) for f in to], size


def pick_starts(g: Graph, k: int) -> list[str]:
    """``k`` addresses from the hubs down the tail: sending ranks spread on a log scale."""
    n = len(g.addresses)
    ranks = np.unique(np.round(np.logspace(0, np.log10(n / 3), 4 * k)).astype(int) - 1)
    ranks = ranks[np.linspace(0, len(ranks) - 1, k).round().astype(int)]
    return g.addresses.gather(ranks.tolist()).to_list()


def degrees(lake: Lake, starts: list[str]) -> pl.DataFrame:
    out = lake.scan("transfer", by="from_address").filter(pl.col("from_address").is_in(starts))
    inn = lake.scan("transfer", by="to_address").filter(pl.col("to_address").is_in(starts))
    a = out.group_by(pl.col("from_address").alias("address")).agg(pl.len().alias("out_degree"))
    b = inn.group_by(pl.col("to_address").alias("address")).agg(pl.len().alias("in_degree"))
    s = pl.DataFrame({"address": starts})
    return s.join(a.collect(), on="address", how="left").join(b.collect(), on="address", how="left").fill_null(0)


def same_trace(t, nodes: set, edges: pl.DataFrame, meta: pl.DataFrame) -> bool:
    """Polars and DuckDB found the same nodes at the same hops and the same edges with the same amounts."""
    if {(a, h) for a, h in t.nodes.select("address", "hop").iter_rows()} != nodes:
        return False
    if t.edges.is_empty() or edges.is_empty():
        return t.edges.is_empty() and edges.is_empty()
    keys = ["source", "target", "tkey", "count", "first_ts", "last_ts", "hop"]
    p = t.edges.with_columns(pl.col("token").fill_null(NATIVE_KEY).alias("tkey")).select(*keys, "value")
    d = edges.join(meta, on="tkey", how="left").with_columns(
        pl.when(pl.col("decimals").is_null())
        .then(pl.col("raw_sum"))
        .otherwise(pl.col("raw_sum") / pl.lit(10.0).pow(pl.col("decimals")))
        .alias("dvalue")
    )
    j = p.join(d.select(*keys, "dvalue"), on=keys, how="full", coalesce=True)
    return j.height == p.height == d.height and bool(
        ((j["value"] - j["dvalue"]).abs() <= 1e-9 * j["dvalue"].abs().clip(1.0, None)).all()
    )


def same_counterparties(cp: pl.DataFrame, d: pl.DataFrame) -> bool:
    p = cp.with_columns(pl.col("token").fill_null(NATIVE_KEY).alias("tkey"))
    keys = ["counterparty", "tkey", "count_in", "count_out"]
    j = p.join(d, on=keys, how="full", coalesce=True, suffix="_d")
    ok = j.height == p.height == d.height
    for c in ("value_in", "value_out"):
        ok = ok and bool(((j[c] - j[f"{c}_d"]).abs() <= 1e-9 * j[f"{c}_d"].abs().clip(1.0, None)).all())
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transfers", type=count, default=count("10M"), help="e.g. 10M, 100M")
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--addresses", type=count, default=None, help="default transfers / 10")
    p.add_argument("--chunk-rows", type=count, default=count("2M"), help="rows per lake append")
    p.add_argument("--out", type=Path, default=None, help="lake directory (default: a temporary one, removed)")
    p.add_argument("--reuse", action="store_true", help="query the lake already in --out (same N, seed)")
    p.add_argument("--starts", type=int, default=24)
    p.add_argument("--hops", type=int, default=4)
    p.add_argument("--directions", default="out,in")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-duckdb", action="store_true")
    p.add_argument("--result", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=3, help="runs of each alerts query (medians over them)")
    a = p.parse_args()
    n = a.transfers
    res: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"python {platform.python_version()}, polars {pl.__version__}",
        "transfers": n,
        "days": a.days,
        "load_before": os.getloadavg(),  # the machine is shared: what else ran, as 1/5/15-minute load averages
    }
    root = a.out or Path(tempfile.mkdtemp(prefix="forensics_scale_"))
    try:
        g = Graph.make(n, a.days, a.seed, a.addresses)
        res["addresses"] = len(g.addresses)
        if not a.reuse:
            if root.exists() and any(root.iterdir()):
                sys.exit(f"{root} is not empty: pass --reuse to query it, or another --out")
            print(f"writing {n:,} transfers ({len(g.addresses):,} addresses) to {root} ...", flush=True)
            res |= write_lake(g, root, a.chunk_rows)
            res["rss_after_write_mb"] = rss_mb()
        lake = Lake(root)
        by_from, by_to, size = lake_files(root)
        res |= {"runs": len(by_from), "lake_bytes": size}
        print(f"lake: {len(by_from)} runs, {size / 1e9:.2f} GB (both sorted copies)", flush=True)
        labels = g.labels(a.seed)
        stop = labels.filter(pl.col("category").is_in(list(DEFAULT_STOP_CATEGORIES)))["address"].to_list()
        starts = pick_starts(g, a.starts)
        deg = degrees(lake, starts)
        res["starts"] = deg.to_dicts()
        print(deg.select("out_degree", "in_degree").describe(), flush=True)
        meta = token_meta([NATIVE_KEY if t[0] is None else t[0] for t in TOKENS]).select("tkey", "decimals")
        duck = None if a.no_duckdb else DuckForensics(by_from, by_to, [t[0] for t in TOKENS])
        trace(lake, starts[-1], 2, labels=labels)  # warm-up: imports, thread pools, label set
        if duck:
            duck.trace(starts[-1], 2, "out", stop)
        queries: dict[str, dict] = {}
        for direction in a.directions.split(","):
            for hops in range(1, a.hops + 1):
                name = f"trace {direction} {hops} hop{'s' if hops > 1 else ''}"
                tp, td, agree, sizes = [], [], 0, []
                for s in starts:
                    dt, t = timed(trace, lake, s, hops, direction, labels=labels)
                    tp.append(dt)
                    sizes.append(t.edges.height)
                    if duck:
                        dt, (nodes, edges) = timed(duck.trace, s, hops, direction, stop)
                        td.append(dt)
                        agree += same_trace(t, nodes, edges, meta)
                queries[name] = _row(tp, td, agree, len(starts), sizes)
                _print_row(name, queries[name])
        tp, td, agree = [], [], 0
        for s in starts:
            dt, cp = timed(counterparties, lake, s, limit=None, labels=labels)
            tp.append(dt)
            if duck:
                dt, d = timed(duck.counterparties, s)
                td.append(dt)
                agree += same_counterparties(cp, d)
        queries["counterparties"] = _row(tp, td, agree, len(starts), None)
        _print_row("counterparties", queries["counterparties"])
        # what `continuum alerts` does over the whole range, and `--start <yesterday>` over the last day
        last = T0_MS + a.days * 86_400_000 - 86_400_000
        for name, since in (("whole range", None), ("last day", last)):
            key = f"alerts (all rules, {name})"
            queries[key] = alert_row(lake, duck, labels, since, a.repeats)
            _print_row(key, queries[key])
        res["queries"] = queries
        res["rss_peak_mb"] = rss_mb()
        res["load_after"] = os.getloadavg()
        print(f"peak RSS {res['rss_peak_mb']:,.0f} MB", flush=True)
    finally:
        if a.out is None:
            shutil.rmtree(root, ignore_errors=True)
    label = f"{n / 1e6:g}M" if n >= 10**6 else str(n)
    out = a.result or REPO / "bench" / "results" / f"forensics_scale_{label}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"results: {out}")


def alert_row(lake: Lake, duck: DuckForensics | None, labels: pl.DataFrame, since_ms: int | None, runs: int) -> dict:
    """``alerts`` (all rules, from ``since_ms`` or the whole range) ``runs`` times, each run followed by the DuckDB
    query twice: as written for the comparison (the hits' keys only) and returning the transfer columns polars
    builds its table from (``duckdb_rows``: the same decoding work). Hits are checked to agree on
    (tx_hash, log_index, rule)."""
    start = None if since_ms is None else datetime.fromtimestamp(since_ms / 1000, tz=UTC)
    tp, td, tr, agree = [], [], [], 0
    for _ in range(runs):
        dt, hits = timed(alerts, lake, labels=labels, start=start)
        tp.append(dt)
        if duck:
            mine = set(hits.select("tx_hash", "log_index", "rule").iter_rows())
            dt, d = timed(duck.alerts, labels, large_thresholds(), since_ms)
            td.append(dt)
            dt, full = timed(duck.alerts, labels, large_thresholds(), since_ms, rows=True)
            tr.append(dt)
            keys = set(full.select("tx_hash", "log_index", "rule").iter_rows())
            agree += mine == set(d.iter_rows()) == keys and len(mine) == d.height == full.height
    row = _row(tp, td, agree, runs, [hits.height])
    if tr:
        row["duckdb_rows"] = stats(tr)
    return row


def _row(tp: list[float], td: list[float], agree: int, n: int, sizes: list[int] | None) -> dict:
    row = {"polars": stats(tp)}
    if td:
        row |= {"duckdb": stats(td), "agree": f"{agree}/{n}"}
    if sizes:
        row["edges_p50"] = float(np.median(sizes))
    return row


def _print_row(name: str, r: dict) -> None:
    d = r.get("duckdb")
    duck = f" | duckdb p50 {d['p50_ms']:8.1f} ms p95 {d['p95_ms']:8.1f} ms | agree {r['agree']}" if d else ""
    if "duckdb_rows" in r:
        duck += f" | duckdb, hit rows p50 {r['duckdb_rows']['p50_ms']:8.1f} ms"
    print(
        f"{name:34s} polars p50 {r['polars']['p50_ms']:8.1f} ms p95 {r['polars']['p95_ms']:8.1f} ms{duck}", flush=True
    )


if __name__ == "__main__":
    main()
