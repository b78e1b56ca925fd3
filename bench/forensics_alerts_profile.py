"""Where whole-range ``alerts`` spends its time, on a lake written by ``bench/forensics_scale.py --out``: the whole
query, its parts, and scans that separate decoding from the ``large`` rule's predicate; and DuckDB's alerts as the
scale bench writes them (the hits' keys only) and returning the transfer columns of each hit (what polars decodes).

    python bench/forensics_alerts_profile.py --lake /data/lake10M --transfers 10M [--runs 5]

Every variant runs once per round, rounds interleaved (the machine is shared); medians of wall and process CPU time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.forensics_duckdb import DuckForensics  # noqa: E402
from bench.forensics_graph import TOKENS, Graph  # noqa: E402
from bench.forensics_scale import count, lake_files  # noqa: E402
from continuum.lake import Lake  # noqa: E402
from forensics.queries import alerts, large_thresholds, over_threshold, transfers  # noqa: E402

LABEL_RULES = ("sanctioned", "mixer_deposit", "mixer_withdrawal", "exploit", "phishing")


def variants(root: Path, transfers_n: int) -> dict[str, Callable[[], object]]:
    """Name -> a call returning a frame."""
    lake = Lake(root)
    labels = Graph.make(transfers_n).labels(0)
    thr = large_thresholds()
    by_from, by_to, _ = lake_files(root)
    duck = DuckForensics(by_from, by_to, [t[0] for t in TOKENS])
    big = transfers(lake, by="from_address").filter(over_threshold(thr))
    hits = big.collect().height
    # a predicate about as selective as the large rule but nearly free: what decoding the hits' columns costs
    every = (pl.col("ts") % (transfers_n // max(hits, 1))) == 0
    return {
        "alerts, all rules": lambda: alerts(lake, labels=labels),
        "alerts, label rules": lambda: alerts(lake, labels=labels, rules=LABEL_RULES),
        "alerts, large rule": lambda: alerts(lake, labels=labels, rules=("large",)),
        "large scan, 9 columns": lambda: big.collect(),
        "large scan, tx_hash+log_index": lambda: big.select("tx_hash", "log_index").collect(),
        "large scan, predicate columns": lambda: big.select("token", "raw_value", "value").collect(),
        "free predicate, 9 columns": lambda: transfers(lake, by="from_address").filter(every).collect(),
        "read 9 columns, no filter": lambda: transfers(lake, by="from_address").collect(),
        "duckdb alerts (keys)": lambda: duck.alerts(labels, thr),
        "duckdb alerts (hit rows)": lambda: duck.alerts(labels, thr, rows=True),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", type=Path, required=True)
    p.add_argument("--transfers", type=count, required=True, help="as written (for the label set)")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    fns = variants(a.lake, a.transfers)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    print(f"load before {os.getloadavg()}", flush=True)
    for _ in range(a.runs):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    print(f"load after {os.getloadavg()}")
    for name in fns:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:32s} wall p50 {w:6.2f} s   cpu p50 {c:6.2f} s")


if __name__ == "__main__":
    main()
