"""The ``continuum`` command line: one command, subcommands that each teach with ``--help``.

Every subcommand is a pair ``(add_arguments, run)`` from a module of this package, imported here by
name (no module names built from strings). Building the parser imports no heavy library: the run
functions import torch, polars, ccxt or web3 when they start, so ``continuum --help`` answers at once.
Errors a user can fix (:class:`continuum.errors.UserError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from commands import (
    alerts,
    backtest,
    chain,
    dashboard,
    demo,
    evaluate,
    forensics,
    learn,
    live,
    market,
    pretrain,
    scheduler,
    signals,
)
from commands.options import overrides
from continuum import __version__
from continuum.errors import UserError

Adder = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace, Any], int]

# name -> (add_arguments, run, one-line help). Nested dicts are sub-subcommands (`backfill market`).
COMMANDS: dict[str, Any] = {
    "demo": (
        demo.add_arguments,
        demo.run,
        "replay the bundled real history through the online learner; signals, backtest, report",
    ),
    "evaluate": (
        evaluate.add_arguments,
        evaluate.run,
        "continual-learning evaluation: Hope vs baselines over market regimes",
    ),
    "pretrain": (pretrain.add_arguments, pretrain.run, "meta-learn Hope's initial states and projections on history"),
    "learn": (learn.add_arguments, learn.run, "consume candles from the bus, learn online, publish signals"),
    "live": (
        live.add_arguments,
        live.run,
        "live monitoring on one machine: exchange (or --replay) -> learner -> signals, lake, dashboard",
    ),
    "signals": (
        signals.add_arguments,
        signals.run,
        "the latest signal of every asset from the lake (direction, weight, confidence) as CSV or JSON",
    ),
    "backtest": (
        backtest.add_arguments,
        backtest.run,
        "strategy backtest over the regimes, driven by the online learner's signals",
    ),
    "backfill": {
        "market": (
            market.add_backfill_arguments,
            market.run_backfill,
            "exchange candles (and trades) through ccxt REST into the lake",
        ),
        "chain": (
            chain.add_backfill_arguments,
            chain.run_backfill,
            "blocks, transfers and swaps from a JSON-RPC node into the lake",
        ),
    },
    "stream": {
        "market": (
            market.add_stream_arguments,
            market.run_stream,
            "live candles/trades through ccxt websockets onto the bus",
        ),
        "chain": (
            chain.add_stream_arguments,
            chain.run_stream,
            "follow a chain over JSON-RPC (reorg-safe) onto the bus",
        ),
    },
    "import": {
        "etl": (
            forensics.add_import_etl_arguments,
            forensics.run_import_etl,
            "an ethereum-etl export (token transfers, transactions) into the lake",
        ),
    },
    "trace": (
        forensics.add_trace_arguments,
        forensics.run_trace,
        "follow funds from an address over N hops in the lake's transfers",
    ),
    "counterparties": (
        forensics.add_counterparties_arguments,
        forensics.run_counterparties,
        "rank an address's counterparties by value and count",
    ),
    "clusters": (
        forensics.add_clusters_arguments,
        forensics.run_clusters,
        "exchange deposit addresses and the wallets behind them (deposit-address heuristic)",
    ),
    "alerts": (
        alerts.add_arguments,
        alerts.run,
        "alert rules: past transfer hits, or --follow: signals and transfers to webhooks (Slack, Discord)",
    ),
    "scheduler": (
        scheduler.add_arguments,
        scheduler.run,
        "scheduled jobs: gap backfills, checkpoint retention, nightly reports",
    ),
    "dashboard": (dashboard.add_arguments, dashboard.run, "start the Streamlit dashboard"),
}

EPILOG = """\
examples:
  continuum demo                                   # bundled Binance history -> Hope -> signals + report
  continuum live --replay --speed 3600             # the live pipeline on replayed history, with the dashboard
  continuum signals --format json                  # the latest signal of every asset in the lake
  continuum evaluate --out out/eval --symbols BTC/USDT,ETH/USDT
  continuum backfill market --exchange binance --symbols BTC/USDT --since 2024-01-01
  continuum trace 0xabc... --hops 2
  continuum clusters                               # exchange deposit addresses and user clusters in the lake
  continuum alerts --follow                        # rules on new signals/transfers -> [alerts].webhooks

configuration: ./continuum.toml (or --config FILE), then CONTINUUM_<SECTION>__<KEY> variables, then options.
"""


def _attach(sub: argparse._SubParsersAction, name: str, spec: tuple[Adder, Runner, str]) -> None:
    add, run, help_text = spec
    p = sub.add_parser(
        name, help=help_text, description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add(p)
    p.set_defaults(_run=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="continuum",
        description="Continuum: a streaming market-signal learner (Hope / Nested Learning) for crypto.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"continuum {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default ./continuum.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        if isinstance(spec, dict):
            grp = sub.add_parser(
                name,
                help=f"{name} {' | '.join(spec)}",
                description=f"continuum {name}: " + "; ".join(f"{k}: {v[2]}" for k, v in spec.items()),
            )
            inner = grp.add_subparsers(dest="source", metavar="SOURCE", required=True)
            for child, cspec in spec.items():
                _attach(inner, child, cspec)
        else:
            _attach(sub, name, spec)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # `continuum live` starts its roles with it
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        from continuum.config import load_config, with_options

        cfg = with_options(load_config(args.config), overrides(args))
        return int(args._run(args, cfg) or 0)
    except UserError as e:
        print(f"continuum: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("continuum: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
