"""``continuum trace``, ``continuum counterparties``, ``continuum clusters``: forensics on the lake's transfers;
``continuum import etl``.

``continuum alerts`` (the transfer rules, and the live rules with ``--follow``) is :mod:`commands.alerts`, which
shares this module's options and table printer. Argument parsing is cheap (no polars import); the queries live in
:mod:`forensics.queries`, address clustering in :mod:`forensics.clusters`, the importer in
:mod:`forensics.etl_import`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from commands.options import config_option
from continuum.config import Config
from continuum.errors import UserError
from continuum.timeframes import parse_date

_COMMON_EPILOG = """\
data: transfers come from the lake (--lake, default the config's lake.root, .continuum/lake), filled by
  `continuum backfill chain --rpc URL --from-block A --to-block B`, `continuum stream chain`, or an
  ethereum-etl export: `continuum import etl EXPORT_DIR`.
labels: exchanges, bridges, mixers, OFAC-sanctioned, exploit and phishing addresses ship with Continuum
  (continuum/labels/SOURCES.md says where each comes from).
"""


def _common(p: argparse.ArgumentParser, with_address: bool = True) -> None:
    if with_address:
        p.add_argument("address", help="0x + 40 hex digits; mixed case must pass its EIP-55 checksum")
    config_option(p, "--lake", key="lake.root", metavar="DIR", help="lake root (default: [lake].root)")
    p.add_argument("--token", help="only this token: a symbol (USDC, ETH for native ether) or a contract address")
    p.add_argument("--start", metavar="DATE", help="from this UTC date/time (ISO, e.g. 2023-05-01 or 2023-05-01T12:00)")
    p.add_argument("--end", metavar="DATE", help="before this UTC date/time (exclusive)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)")
    p.add_argument("--limit", type=int, default=50, help="rows to print (default 50; 0 = all)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (p.epilog or "") + _COMMON_EPILOG


def _engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine``/``--spark-master``: the commands that have a Spark version (trace, counterparties, alerts)."""
    p.add_argument(
        "--engine",
        choices=("polars", "spark"),
        default="polars",
        help="polars: on this machine (default); spark: on Apache Spark, local or a cluster (docs/forensics.md)",
    )
    p.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: spark://HOST:7077, yarn, k8s://..., local[4]\n"
        "(default: $SPARK_MASTER, else spark-submit's --master, else local[2]); --lake may then be s3a://... or hdfs://...",
    )


def _date(s: str | None, flag: str) -> datetime | None:
    return parse_date(s, flag)


def _lake(args: argparse.Namespace, cfg: Config):
    from pathlib import Path

    from continuum.lake import Lake

    if args.lake and not Path(cfg.lake.root).is_dir():
        raise UserError(f"--lake {cfg.lake.root}: no such directory")
    return Lake(cfg.lake.root)


class Engine(NamedTuple):
    """What answers a query: the lake as the engine reads it, and its trace, counterparties and alerts."""

    source: object
    trace: Callable[..., Any]
    counterparties: Callable[..., Any]
    alerts: Callable[..., Any]


def _engine(args: argparse.Namespace, cfg: Config) -> Engine:
    """``--engine polars`` (:mod:`forensics.queries` on a :class:`Lake`) or ``spark`` (:mod:`forensics.spark_engine`
    on the lake's root, which may be a URI such as ``s3a://bucket/lake`` that only Spark reads)."""
    if args.engine == "polars":
        if args.spark_master:
            raise UserError("--spark-master needs --engine spark")
        from forensics import queries

        return Engine(_lake(args, cfg), queries.trace, queries.counterparties, queries.alerts)
    from forensics.spark_session import require_pyspark

    require_pyspark()  # before anything else: one clear line when it is missing
    from functools import partial
    from pathlib import Path

    from forensics import spark_engine
    from forensics.spark_session import session

    root = cfg.lake.root
    if "://" not in root and args.lake and not Path(root).is_dir():
        raise UserError(f"--lake {root}: no such directory")
    spark = session(args.spark_master)
    return Engine(
        root,
        partial(spark_engine.trace, spark=spark),
        partial(spark_engine.counterparties, spark=spark),
        partial(spark_engine.alerts, spark=spark),
    )


def _decimals_lookup(rpc_url: str | None, cfg: Config):
    """``decimals()`` from the token contracts over JSON-RPC, cached per chain id under the lake (or None)."""
    if not rpc_url:
        return None
    from pathlib import Path

    from forensics.values import DecimalsCache
    from ingest.chain.blocks import RpcMetadata
    from ingest.chain.decode import qty
    from ingest.chain.rpc import Rpc

    rpc = Rpc(rpc_url, timeout_s=10.0)
    chain_id = qty(rpc.call("eth_chainId", []))
    meta = RpcMetadata(rpc)
    return DecimalsCache(lambda t: meta.token(t).decimals, Path(cfg.lake.root) / "_cache" / f"decimals-{chain_id}.json")


def _positive(name: str, v: float) -> None:
    if v < 0:
        raise UserError(f"{name} must be >= 0, got {v}")


# --------------------------------------------------------------------------- output
def _print(df, fmt: str, limit: int, view: str) -> None:
    """``json``/``csv``: every column whole; ``table``: the view's readable columns, fitted to the terminal."""
    import os

    import polars as pl

    if limit:
        df = df.head(limit)
    if fmt == "json":
        print(df.write_json())
        return
    if fmt == "csv":
        for c in df.columns:
            if df.schema[c] == pl.List(pl.String):
                df = df.with_columns(pl.col(c).list.join(","))
        sys.stdout.write(df.write_csv())
        return
    from forensics import display

    cols = {
        "nodes": display.NODE_COLS,
        "edges": display.EDGE_COLS,
        "counterparties": display.COUNTERPARTY_COLS,
        "alerts": display.ALERT_COLS,
        "clusters": display.CLUSTER_COLS,
        "members": display.MEMBER_COLS,
    }[view]
    width = int(os.environ.get("COLUMNS", "120") or 120)
    print(display.table(df, cols, width=max(60, width)))


# --------------------------------------------------------------------------- trace
def add_trace_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Follow funds from ADDRESS breadth-first over --hops hops: forward (where the money went), backward\n"
        "(where it came from) or both. Each edge aggregates the transfers between two addresses per token\n"
        "(value, count, first/last time); every node shows its label and category, and risk categories\n"
        "(sanctioned, mixer, exploit, phishing) met on the way are flagged on every node downstream.\n"
        "Paths respect time: funds are only followed out of a node after they arrived there."
    )
    p.epilog = """\
examples:
  continuum trace 0x098b716b8aaf21512996dc57eb0615e2383e2f96 --hops 3          # forward, 3 hops
  continuum trace 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045 --direction in --token USDC
  continuum trace 0xabc... --hops 2 --min-value 10 --token ETH --out trace.html   # also .json, .dot
  continuum trace 0xabc... --hops 3 --engine spark --spark-master spark://head:7077 --lake s3a://bucket/lake

"""
    _common(p)
    _engine_options(p)
    p.add_argument("--hops", type=int, default=2, help="how many hops to follow (default 2, at most 8)")
    p.add_argument(
        "--direction", choices=("out", "in", "both"), default="out", help="out: forward, in: backward (default out)"
    )
    p.add_argument("--min-value", type=float, default=0.0, help="ignore transfers below this many token units")
    p.add_argument("--top", type=int, default=25, help="follow at most this many counterparties per node (default 25)")
    p.add_argument(
        "--expand-services",
        action="store_true",
        help="also expand through exchanges, DEXes, bridges and mixers (by default they end a path)",
    )
    p.add_argument("--any-order", action="store_true", help="follow transfers regardless of time order")
    p.add_argument("--show", choices=("nodes", "edges"), default="nodes", help="which table to print (default nodes)")
    p.add_argument(
        "--collapse-clusters",
        action="store_true",
        help="one node per cluster: an exchange's hot wallets and the deposit addresses found for it (deposit\n"
        "addresses then end a path like any exchange address), and wallets sharing a deposit address; found\n"
        "over the whole lake with the defaults of `continuum clusters`",
    )
    p.add_argument("--out", metavar="FILE", help="also write the graph: .html (drawing), .json, .dot or .svg")
    p.add_argument(
        "--rpc",
        metavar="URL",
        help="read unknown tokens' decimals() from their contracts on this JSON-RPC node (cached in the lake's\n"
        "_cache/ folder per chain id); without it decimals come from the known-token table, else raw units",
    )


def run_trace(args: argparse.Namespace, cfg: Config) -> int:
    from forensics.addresses import parse_address

    address = parse_address(args.address)
    if not 1 <= args.hops <= 8:
        raise UserError(f"--hops must be between 1 and 8, got {args.hops}")
    _positive("--min-value", args.min_value)
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    from forensics.rules import DEFAULT_STOP_CATEGORIES

    if args.collapse_clusters and args.engine != "polars":
        raise UserError("--collapse-clusters runs on the polars engine (clustering reads the whole lake here)")
    engine = _engine(args, cfg)
    table, labels = _clusters_for_trace(engine.source) if args.collapse_clusters else (None, None)
    t = engine.trace(
        engine.source,
        address,
        hops=args.hops,
        direction=args.direction,
        min_value=args.min_value,
        token=args.token,
        start=_date(args.start, "--start"),
        end=_date(args.end, "--end"),
        stop_at=() if args.expand_services else DEFAULT_STOP_CATEGORIES,
        top=args.top,
        time_respecting=not args.any_order,
        decimals=_decimals_lookup(args.rpc, cfg),
        labels=labels,
    )
    if table is not None:
        from forensics.clusters import collapse

        t = collapse(t, table)
    if args.out:
        from forensics.graph import write

        path = write(t, args.out)
        print(f"graph written to {path}", file=sys.stderr)
    if args.format == "json" and args.show == "nodes":
        from forensics.graph import to_json

        print(to_json(t))
        return 0
    if t.edges.is_empty() and args.format == "table":
        print(
            f"no transfers {'from' if args.direction == 'out' else 'to' if args.direction == 'in' else 'with'} "
            f"{address} in the lake with these filters (is the lake filled? see --help)"
        )
        return 0
    if args.format == "table":
        print(f"trace of {address}, {args.direction}, {args.hops} hop(s)\n")
    if args.show == "edges":
        edges = t.edges
        if args.format == "table":  # the table shows who is on each side
            names = t.nodes.select("address", "label")
            edges = edges.join(names.rename({"address": "source", "label": "source_label"}), on="source", how="left")
            edges = edges.join(names.rename({"address": "target", "label": "target_label"}), on="target", how="left")
        _print(edges, args.format, args.limit, "edges")
    else:
        _print(t.nodes.drop("label_source"), args.format, args.limit, "nodes")
    if args.format == "table":
        n_flag = t.flagged.height
        print(
            f"\n{t.nodes.height} addresses, {t.edges.height} edges over {args.hops} hop(s) {args.direction}; "
            f"{n_flag} in a risk category"
            + (
                ": "
                + ", ".join(f"{r['label'] or r['address']} ({r['category']})" for r in t.flagged.iter_rows(named=True))
                if n_flag
                else ""
            )
        )
    return 0


def _clusters_for_trace(lake):
    """The cluster table over the whole lake, and the label set with its deposit addresses added (as exchange)."""
    import polars as pl

    from continuum.labels import load_labels
    from forensics.clusters import as_labels, clusters

    table = clusters(lake)
    base = load_labels().select("address", "name", "category", "source")
    return table, pl.concat([base, as_labels(table)])


# --------------------------------------------------------------------------- counterparties
def add_counterparties_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Rank the addresses ADDRESS sent funds to or received funds from: value in and out, transfer\n"
        "counts, first and last seen, and each counterparty's label (exchange, mixer, sanctioned, ...).\n"
        "One row per counterparty and token; values of different tokens do not add, so use --token to\n"
        "rank one asset by value."
    )
    p.epilog = """\
examples:
  continuum counterparties 0x7054b0f980a7eb5b3a6b3446f3c947d80162775c
  continuum counterparties 0xabc... --token USDC --by count --format csv > cp.csv

"""
    _common(p)
    _engine_options(p)
    p.add_argument("--by", choices=("value", "count"), default="value", help="ranking key (default value)")
    p.add_argument("--min-value", type=float, default=0.0, help="ignore transfers below this many token units")
    p.add_argument("--rpc", metavar="URL", help="read unknown tokens' decimals() over JSON-RPC (as for trace)")


def run_counterparties(args: argparse.Namespace, cfg: Config) -> int:
    from forensics.addresses import parse_address

    address = parse_address(args.address)
    _positive("--min-value", args.min_value)
    engine = _engine(args, cfg)
    df = engine.counterparties(
        engine.source,
        address,
        token=args.token,
        start=_date(args.start, "--start"),
        end=_date(args.end, "--end"),
        min_value=args.min_value,
        by=args.by,
        limit=args.limit or None,
        decimals=_decimals_lookup(args.rpc, cfg),
    )
    if df.is_empty() and args.format == "table":
        print(f"no transfers with {address} in the lake with these filters (is the lake filled? see --help)")
        return 0
    _print(df, args.format, args.limit, "counterparties")
    return 0


# --------------------------------------------------------------------------- clusters
def add_clusters_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Address clusters found in the lake's transfers with the exchange deposit-address heuristic (Victor,\n"
        "FC 2020): an address that receives funds and forwards (nearly) all of them to a labelled hot wallet of\n"
        "one exchange soon afterwards is that exchange's deposit address. An exchange cluster is its hot wallets\n"
        "and deposit addresses; a user cluster is the wallets that paid into the same deposit addresses (one\n"
        "deposit address belongs to one customer). One row per cluster, or per address with --members."
    )
    p.epilog = """\
how a deposit address is recognised (the knobs above):
  every outgoing transfer is matched with what the address received of the same token since its previous
  outgoing transfer and at most --window before it. It is a forward when it goes to a hot wallet and its
  amount is within --tolerance of that (ether may also be short by --native-fee: the sweep's gas). An
  address whose forwards go to one exchange only and make up at least --min-share of its outgoing
  transfers is a deposit address. A sender paying into more than --max-sender-deposits addresses that
  forward to exchanges (payroll, a payment processor) links no users; nor do labelled senders (another
  exchange withdrawing). --token/--start/--end limit what the heuristic sees, evidence included.

what it gets wrong: a person's own wallet used once to reach an exchange (receive, forward everything,
  never used again) looks exactly like a deposit address; deposit addresses swept later than --window are
  missed. Measured precision and recall: docs/forensics.md, "Clustering".

examples:
  continuum clusters                                 # one row per cluster, largest first
  continuum clusters --kind user --members           # wallets linked through shared deposit addresses
  continuum clusters --address 0xabc...              # the cluster(s) an address is in, with every member
  continuum clusters --exchange Binance --members --format csv > binance.csv
  continuum clusters --window 24h --tolerance 0.05   # looser: more found, more mistaken
  continuum trace 0xabc... --collapse-clusters       # a trace with one node per cluster

"""
    _common(p, with_address=False)
    p.add_argument("--kind", choices=("exchange", "user", "all"), default="all", help="which clusters (default all)")
    p.add_argument("--exchange", help="only clusters of this exchange (as labelled, e.g. Binance; any case)")
    p.add_argument("--address", help="only the cluster(s) this address is a member of (implies --members)")
    p.add_argument("--members", action="store_true", help="one row per member address instead of per cluster")
    p.add_argument("--window", default="12h", help="forward at most this long after receiving (default 12h; 30m, 3d)")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative amount tolerance (default 0.01 = 1%%)")
    p.add_argument("--native-fee", type=float, default=0.01, help="ether a sweep may lack for its gas (default 0.01)")
    p.add_argument("--min-share", type=float, default=0.9, help="share of outgoing transfers that are forwards (0.9)")
    p.add_argument("--min-forwards", type=int, default=1, help="matched forwards a deposit address needs (default 1)")
    p.add_argument("--max-sender-deposits", type=int, default=10, help="a sender paying more links no users (10)")


def run_clusters(args: argparse.Namespace, cfg: Config) -> int:
    from continuum.timeframes import timeframe_ms

    window = timeframe_ms(args.window, "--window")
    address = None
    if args.address:
        from forensics.addresses import parse_address

        address = parse_address(args.address)
    from datetime import timedelta

    import polars as pl

    from forensics.clusters import ClusterParams, clusters, summary

    try:
        params = ClusterParams(
            window=timedelta(milliseconds=window),
            tolerance=args.tolerance,
            native_fee=args.native_fee,
            min_share=args.min_share,
            min_forwards=args.min_forwards,
            max_sender_deposits=args.max_sender_deposits,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    table = clusters(
        _lake(args, cfg), params, token=args.token, start=_date(args.start, "--start"), end=_date(args.end, "--end")
    )
    if args.kind != "all":
        table = table.filter(pl.col("kind") == args.kind)
    if args.exchange:
        table = table.filter(pl.col("exchange").str.to_lowercase().str.contains(args.exchange.lower(), literal=True))
    if address:
        ids = table.filter(pl.col("address") == address)["cluster_id"].implode()
        table = table.filter(pl.col("cluster_id").is_in(ids))
    if table.is_empty() and args.format == "table":
        print("no clusters in the lake with these filters (is the lake filled? does it reach a labelled exchange?)")
        return 0
    if args.members or address:
        _print(table, args.format, args.limit, "members")
    else:
        _print(summary(table), args.format, args.limit, "clusters")
    return 0


# --------------------------------------------------------------------------- import etl
IMPORT_EPILOG = """\
examples:
  continuum import etl path/to/ethereum-etl-export                 # into [lake].root
  continuum import etl export_dir --lake /data/lake --chain ethereum

The directory holds ethereum-etl's token_transfers.* and/or transactions.* (csv or json lines), as
`ethereumetl export_all` writes them. Rows are deduplicated on their natural key, so importing the same
export twice adds nothing.
"""


def add_import_etl_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = IMPORT_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("export_dir", help="directory with token_transfers.* and/or transactions.* (csv or jsonl)")
    config_option(p, "--lake", key="lake.root", metavar="DIR", help="lake root (default: [lake].root)")
    config_option(p, "--chain", key="chain.chain", help="chain name stored with the rows (default: [chain].chain)")


def run_import_etl(args: argparse.Namespace, cfg: Config) -> int:
    from forensics.etl_import import import_export

    n, new = import_export(args.export_dir, cfg.lake.root, cfg.chain.chain)
    print(f"read {n} transfers from {args.export_dir}; {new} new in the lake at {cfg.lake.root}")
    return 0
