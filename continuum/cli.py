"""The ``continuum`` command line: one command, subcommands that each teach with ``--help``.

Each subcommand lives in the module that does the work and exposes two functions:
``add_arguments(parser)`` (cheap: no heavy imports at module level) and ``run(args, cfg) -> int``.
Errors a user can fix (:class:`continuum.errors.UserError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from continuum import __version__
from continuum.errors import UserError

# name -> (module, one-line help). Nested dicts are sub-subcommands (`backfill market`).
COMMANDS: dict[str, object] = {
    "demo": (
        "continuum.demo",
        "replay the bundled real history through the online learner; signals, backtest, report",
    ),
    "evaluate": (
        "learner.evaluation.cli",
        "continual-learning evaluation: Hope vs baselines over market regimes",
    ),
    "pretrain": ("learner.pretrain", "meta-learn Hope's initial states and projections on history"),
    "learn": (
        "learner.service",
        "consume candles from the bus, learn online, publish signals (checkpointed)",
    ),
    "backtest": (
        "strategies.cli",
        "strategy backtest over the regimes, driven by the online learner's signals",
    ),
    "backfill": {
        "market": ("ingest.market_cli", "exchange candles (and trades) through ccxt REST into the lake"),
        "chain": ("ingest.chain_cli", "blocks, transfers and swaps from a JSON-RPC node into the lake"),
    },
    "stream": {
        "market": ("ingest.market_cli", "live candles/trades through ccxt websockets onto the bus"),
        "chain": ("ingest.chain_cli", "follow a chain over JSON-RPC (reorg-safe) onto the bus"),
    },
    "trace": ("forensics.cli", "follow funds from an address over N hops in the lake's transfers"),
    "counterparties": ("forensics.cli", "rank an address's counterparties by value and count"),
    "alerts": ("forensics.cli", "alert rules on the lake's transfers (sanctioned, mixers, large flows)"),
    "scheduler": (
        "continuum.scheduler",
        "scheduled jobs: gap backfills, checkpoint retention, nightly reports",
    ),
    "dashboard": ("dashboard.launch", "start the Streamlit dashboard"),
}

EPILOG = """\
examples:
  continuum demo                                   # bundled Binance history -> Hope -> signals + report
  continuum evaluate --data data/binance --out out/eval --symbols BTC/USDT,ETH/USDT
  continuum backfill market --exchange binance --symbols BTC/USDT --since 2024-01-01
  continuum trace 0xabc... --hops 2

configuration: ./continuum.toml (or --config FILE) and CONTINUUM_<SECTION>__<KEY> variables.
"""


def _attach(sub: argparse._SubParsersAction, name: str, spec: tuple[str, str], path: list[str]) -> None:
    module, help_text = spec
    p = sub.add_parser(
        name, help=help_text, description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if not module.startswith(e.name or "\0"):
            raise
        return  # a command whose module is not in this build; tests/test_cli.py fails on it
    adder = getattr(mod, f"add_{'_'.join(path)}_arguments", None) or mod.add_arguments
    adder(p)
    runner = getattr(mod, f"run_{'_'.join(path)}", None) or mod.run
    p.set_defaults(_run=runner)


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
                help=f"{name} market | chain",
                description=f"continuum {name}: " + "; ".join(f"{k}: {v[1]}" for k, v in spec.items()),
            )
            inner = grp.add_subparsers(dest="source", metavar="SOURCE", required=True)
            for child, cspec in spec.items():
                _attach(inner, child, cspec, [name, child])
        else:
            _attach(sub, name, spec, [name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        from continuum.config import load_config

        cfg = load_config(args.config)
        return int(args._run(args, cfg) or 0)
    except UserError as e:
        print(f"continuum: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("continuum: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
