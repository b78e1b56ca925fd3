"""``continuum dashboard``: start the Streamlit app headless on a port, with the data paths passed by env.

The launcher owns its server: it checks the port before starting anything (a busy port is one line and exit
code 2), prints the URL once the server answers, and stops the server when it is stopped itself. The server
runs in its own process group; SIGINT, SIGTERM and SIGHUP sent to the launcher are forwarded to that group
(SIGKILL after a grace period), and on Linux the server also gets SIGTERM from the kernel if the launcher
dies without a chance to forward anything (``PR_SET_PDEATHSIG``, e.g. ``kill -9``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from commands.options import add_metrics_option, config_option, serve_metrics
from continuum.config import Config
from continuum.errors import UserError

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 10.0  # after forwarding a stop signal, how long the server may take before SIGKILL
START_TIMEOUT_S = 120.0  # how long to wait for the server's health endpoint before giving up


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Start the Streamlit dashboard: Signals (latest forecasts, lag, regime switches, alerts; re-read every\n"
        "--refresh seconds), Memory (per-level activity), Backtests & evaluation (equity, per-regime tables,\n"
        "R matrix), Forensics (trace, counterparties). Pages: /signals, /memory, /evaluation, /forensics.\n"
        "Open the printed URL in a browser; Ctrl-C (or SIGTERM to this process) stops it."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "example:\n  continuum demo && continuum dashboard --port 8501\n"
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    config_option(
        p, "--lake", key="lake.root", metavar="DIR", help="lake with signals and transfers (default: [lake].root)"
    )
    p.add_argument(
        "--eval-dir",
        metavar="DIR",
        default=".continuum/demo/eval",
        help="a `continuum evaluate --out` dir, or a demo's --out/eval (default %(default)s: the demo's)",
    )
    p.add_argument(
        "--backtest-dir",
        metavar="DIR",
        default=".continuum/demo",
        help="a `continuum backtest --out` or `continuum demo --out` dir (default %(default)s)",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often the Signals page re-reads the lake without a reload (default 5; 0: never)",
    )
    add_metrics_option(p)


def command(args: argparse.Namespace, lake: str) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment (separate so tests can start it the same way)."""
    env = dict(os.environ)
    env.update(
        CONTINUUM_DASHBOARD_LAKE=str(Path(lake).resolve()),
        CONTINUUM_DASHBOARD_EVAL_DIR=str(Path(args.eval_dir).resolve()),
        CONTINUUM_DASHBOARD_BACKTEST_DIR=str(Path(args.backtest_dir).resolve()),
        PYTHONPATH=os.pathsep.join(filter(None, [str(APP.parent.parent), env.get("PYTHONPATH")])),
    )
    if getattr(args, "refresh", None) is not None:
        env["CONTINUUM_DASHBOARD_REFRESH"] = f"{args.refresh:g}"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    return cmd, env


def check_port(address: str, port: int) -> None:
    """Raise a one-line UserError when ``address:port`` cannot be bound (another server holds it)."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--address {address}: {e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            try:
                s.bind(addr)
            except OSError as e:
                raise UserError(
                    f"port {port} on {address} is in use ({e.strerror}); stop what holds it or pick another with "
                    "--port N"
                ) from None


def _die_with_parent(parent: int):
    """``preexec_fn`` for the server: on Linux, the kernel sends it SIGTERM when the launcher dies."""

    def set_pdeathsig() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the launcher died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return set_pdeathsig


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the server's own process group: the server and anything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.refresh < 0:
        raise UserError(f"--refresh must be >= 0 seconds, got {args.refresh:g}")
    if args.metrics_port is not None and args.metrics_port == args.port:
        raise UserError(f"--metrics-port {args.metrics_port} is the dashboard's --port; pick another")
    check_port(args.address, args.port)
    lake = cfg.lake.root
    cmd, env = command(args, lake)
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.address, args.address)
    probe = f"http://{f'[{local}]' if ':' in local else local}:{args.port}"
    metrics = _metrics(args, probe, lake)
    try:
        return _serve(args, cmd, env, probe, lake)
    finally:
        if metrics is not None:
            metrics.close()


def _metrics(args: argparse.Namespace, probe: str, lake: str):
    """``--metrics-port``: is the server up (its health check, when scraped), and how old is the newest signal."""
    from continuum.lake import Lake

    metrics = serve_metrics(args)
    if metrics is not None:
        metrics.gauge_from("continuum_dashboard_up", lambda: float(_healthy(probe)))
        metrics.gauge_from("continuum_signal_age_seconds", lambda: _signal_age(Lake(lake)))
    return metrics


def _signal_age(lake) -> float:
    """Seconds from the newest signal's bar time in the lake to now (NaN when there is none)."""
    last = lake.last_ts("signal")
    return float("nan") if last is None else time.time() - last / 1000


def _serve(args: argparse.Namespace, cmd: list[str], env: dict[str, str], probe: str, lake: str) -> int:
    """Run the server until it exits or a stop signal; the URL is printed once it answers."""

    stop: list[float] = []  # when each stop signal arrived (monotonic seconds)
    server: list[subprocess.Popen] = []

    def forward(signum, _frame) -> None:
        stop.append(time.monotonic())
        if server:
            _signal_group(server[0], signum)

    old = {s: signal.getsignal(s) for s in FORWARDED}
    for s in FORWARDED:
        signal.signal(s, forward)
    try:
        proc = subprocess.Popen(cmd, env=env, process_group=0, preexec_fn=_die_with_parent(os.getpid()))
    except BaseException:
        for s, h in old.items():
            signal.signal(s, h)
        raise
    server.append(proc)
    if stop:  # a stop signal came while the server was starting
        _signal_group(proc, signal.SIGTERM)
    started, announced, late = time.monotonic(), False, False
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop and time.monotonic() - stop[0] > STOP_GRACE_S:
                _signal_group(proc, signal.SIGKILL)
            elif not stop and not announced:
                if _healthy(probe):
                    url = f"http://{args.address}:{args.port}"
                    print(f"Continuum dashboard on {url}  (lake {lake}; Ctrl-C to stop)", flush=True)
                    announced = True
                elif time.monotonic() - started > START_TIMEOUT_S:
                    late = True
                    forward(signal.SIGTERM, None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc.poll() is None:  # an exception in the loop: never leave the server behind
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    if late:
        raise UserError(f"the dashboard did not answer on {probe} within {START_TIMEOUT_S:.0f} s; stopped it")
    if stop:
        return 0  # stopped on request
    if not announced:
        print(f"continuum: error: the dashboard server exited with code {rc} before serving", file=sys.stderr)
        return rc or 1
    return rc
