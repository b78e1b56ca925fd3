"""``continuum signals``: the latest signal of every asset from the lake, as CSV or JSON a desk can read.

Each row: the bar, the model, the asset, ``direction`` (long / short / neutral), the target ``weight``
(fraction of equity), ``confidence`` (0..1), the forecast 24h return and volatility, the regime word, and
freqtrade's ``enter_long/exit_long/enter_short/exit_short`` flags (docs/signals.md has the schema). The
signals are what ``continuum learn`` (live) or ``continuum demo`` wrote to the lake.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commands.options import config_option, split_list
from continuum.config import Config
from continuum.errors import UserError

FORMATS = ("csv", "json")

EPILOG = """\
examples:
  continuum signals                                        # newest signal per asset, CSV, [lake].root
  continuum signals --format json --symbols BTC/USDT,ETH/USDT
  continuum signals --lake .continuum/lake --model hope --last 24 > last_day.csv
  continuum signals --format json | jq '.[] | select(.direction != "neutral")'

columns: time (bar open, UTC; the forecast is made at its close), model, exchange, symbol, direction,
weight, confidence, ret_24h, vol_24h, ret_1h, regime, enter_long, exit_long, enter_short, exit_short, ts.
weight: the target weight (fraction of equity; < 0 short) of the feed's position rule, mv_partial
(strategies/positions.py); direction: its side (neutral below 0.1% of equity). confidence: 2 P - 1, P the
forecast's own probability that the 24h return has the sign it says. Signals written before these fields
existed show an empty direction and no weight.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--format", default="csv", help=f"output: {' | '.join(FORMATS)} (default %(default)s)")
    config_option(p, "--lake", key="lake.root", metavar="DIR", help="lake with the signals (default: [lake].root)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: every symbol in the lake)")
    p.add_argument("--model", default=None, help="only this model's signals (default: every model, one row each)")
    p.add_argument("--last", type=int, default=1, help="newest N signals per asset (default %(default)s)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    import polars as pl

    from continuum.lake import Lake
    from learner.signals import latest

    if args.format not in FORMATS:
        raise UserError(f"--format {args.format!r}: choose {' or '.join(FORMATS)}")
    if args.last < 1:
        raise UserError(f"--last must be >= 1, got {args.last}")
    root = Path(cfg.lake.root)
    if not root.is_dir():
        raise UserError(f"--lake {root}: no such directory (the lake `continuum learn` or `continuum demo` writes)")
    lf = Lake(root).scan("signal")
    names = lf.collect_schema().names()
    if not names:
        raise UserError(
            f"--lake {root}: no signals there (kind=signal); `continuum learn` or `continuum demo` writes them"
        )
    have = lf.select("model", "symbol").unique().collect()
    if args.model is not None:
        models = sorted(set(have["model"]))
        if args.model not in models:
            raise UserError(f"--model {args.model}: no signals of it in {root} (models: {', '.join(models)})")
        lf = lf.filter(pl.col("model") == args.model)
    symbols = split_list(args.symbols)
    if symbols:
        known = set(have["symbol"])
        missing = [s for s in symbols if s not in known]
        if missing:
            raise UserError(
                f"--symbols: no signals for {', '.join(missing)} in {root} (has {', '.join(sorted(known))})"
            )
        lf = lf.filter(pl.col("symbol").is_in(symbols))
    df = latest(lf, args.last)
    sys.stdout.write(df.write_json() + "\n" if args.format == "json" else df.write_csv())
    return 0
