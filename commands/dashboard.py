"""``continuum dashboard``: start the Streamlit app headless on a port, with the data paths passed by env."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from commands.options import config_option
from continuum.config import Config
from continuum.errors import UserError

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Start the Streamlit dashboard: Signals (latest forecasts, alerts), Memory (per-level activity),\n"
        "Backtests & evaluation (equity, per-regime tables, R matrix), Forensics (trace, counterparties).\n"
        "Open the printed URL in a browser; Ctrl-C stops it."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "example:\n  continuum demo && continuum dashboard --port 8501\n"
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    config_option(
        p, "--lake", key="lake.root", metavar="DIR", help="lake with signals and transfers (default: [lake].root)"
    )
    p.add_argument("--eval-dir", metavar="DIR", default=".continuum/demo/eval", help="a `continuum evaluate --out` dir")
    p.add_argument("--backtest-dir", metavar="DIR", default=".continuum/demo", help="a `continuum backtest --out` dir")


def command(args: argparse.Namespace, lake: str) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment (separate so tests can start it the same way)."""
    env = dict(os.environ)
    env.update(
        CONTINUUM_DASHBOARD_LAKE=str(Path(lake).resolve()),
        CONTINUUM_DASHBOARD_EVAL_DIR=str(Path(args.eval_dir).resolve()),
        CONTINUUM_DASHBOARD_BACKTEST_DIR=str(Path(args.backtest_dir).resolve()),
        PYTHONPATH=os.pathsep.join(filter(None, [str(APP.parent.parent), env.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    return cmd, env


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    lake = cfg.lake.root
    cmd, env = command(args, lake)
    print(f"Continuum dashboard on http://{args.address}:{args.port}  (lake {lake}; Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
