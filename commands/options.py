"""Options that stand for configuration keys, declared once and merged into the config once.

A command declares ``config_option(p, "--device", key="learner.device", ...)``; the command line
(:func:`commands.cli.main`) loads the config and applies every such option that the user gave on top of
it (:func:`continuum.config.with_options`), so ``run(args, cfg)`` reads each setting from ``cfg`` only
and never writes ``args.x or cfg.y``. Precedence: defaults < TOML file < environment < option.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from continuum.panel import Panel

_KEYS = "_config_options"


def config_option(p: argparse.ArgumentParser, *flags: str, key: str, **kw: Any) -> argparse.Action:
    """An option that overrides ``key`` ("section.key") when given. Its help should name the key."""
    action = p.add_argument(*flags, default=None, **kw)
    p.set_defaults(**{_KEYS: (*(p.get_default(_KEYS) or ()), (flags[0], key, action.dest))})
    return action


def overrides(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """``[(flag, "section.key", value)]`` for the options of the chosen command (``None`` when not given)."""
    return [(flag, key, getattr(args, dest)) for flag, key, dest in getattr(args, _KEYS, ())]


def add_metrics_option(p: argparse.ArgumentParser) -> None:
    """``--metrics-port`` (off by default) and ``--metrics-address``: serve Prometheus metrics
    (continuum/metrics.py) on ADDRESS:PORT; loopback unless the operator opens it (a scraper in another
    container or host needs ``0.0.0.0``)."""
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on http://ADDRESS:PORT/metrics (off by default; 9464 is customary)",
    )
    p.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="interface for --metrics-port (default %(default)s; 0.0.0.0 for a scraper on another host)",
    )


def serve_metrics(args: argparse.Namespace):
    """The command's served :class:`continuum.metrics.Metrics` (None without ``--metrics-port``)."""
    from continuum.metrics import from_port

    return from_port(args.metrics_port, args.metrics_address)


def split_list(s: str | None) -> list[str] | None:
    """``"A/B, C/D"`` -> ``["A/B", "C/D"]``; ``None`` or empty -> ``None``."""
    out = [x.strip() for x in (s or "").split(",") if x.strip()]
    return out or None


# ----------------------------------------------------------------------------- history on disk
def add_history_options(p: argparse.ArgumentParser, start_help: str = "ignore bars before this date") -> None:
    """``--data --symbols --start --end``: which bars of a freqtrade-style data directory a command reads."""
    p.add_argument("--data", default=None, help="freqtrade-style data dir (default: bundled Binance 1h)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all in --data)")
    p.add_argument("--start", default=None, help=start_help)
    p.add_argument("--end", default=None, help="ignore bars from this date on")


def add_run_options(p: argparse.ArgumentParser, until_help: str) -> None:
    """``--pretrain-until --pretrain-steps --seed --device --quiet``: how a model is started at the cut."""
    p.add_argument("--pretrain-until", default="2018-12-15", help=f"{until_help} (default %(default)s)")
    p.add_argument("--pretrain-steps", type=int, default=300, help="outer steps for Hope and neural baselines")
    p.add_argument("--seed", type=int, default=7)
    config_option(p, "--device", key="learner.device", help="cpu | cuda | auto (default [learner].device)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def load_history(args: argparse.Namespace, before_start: timedelta | None = None) -> Panel:
    """The panel ``add_history_options`` asked for (``before_start``: also load that much before --start)."""
    from continuum.config import BUNDLED_DATA
    from continuum.timeframes import parse_date
    from ingest.replay import load_panel

    start = parse_date(args.start, "--start")
    if start is not None and before_start is not None:
        start -= before_start
    return load_panel(
        args.data or BUNDLED_DATA, symbols=split_list(args.symbols), start=start, end=parse_date(args.end, "--end")
    )
