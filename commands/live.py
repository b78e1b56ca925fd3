"""``continuum live``: live monitoring on one machine — a market source, the learner, the lake and the dashboard.

Three roles (docs/service.md, "continuum live"):

- **source**: closed candles from a ccxt exchange's websockets (``ingest.market.MarketStream``; the bars
  missed since the last run come over REST first), or ``--replay``: a freqtrade data directory (default the
  bundled Binance history) published bar by bar at ``--speed`` times real time (3600: an hour a second);
- **learner**: :class:`learner.service.LearnerService` from the shipped meta-weights
  (``data/hope_pretrained.pt`` unless ``--pretrained``/``[learner].pretrained`` says otherwise): predicts
  every bar, learns as targets are realised, publishes signals to the bus and the lake, checkpoints;
- **dashboard**: ``continuum dashboard``, whose launcher owns the Streamlit server (port check, health wait,
  the server stopped with it).

On the embedded bus (the default) source and learner share one process (the source in a thread) and the
dashboard's launcher is a child process. SIGINT/SIGTERM: the source stops, the learner checkpoints (signals
flushed to the lake, state saved), the launcher gets SIGTERM (it stops its server) and is waited for, exit 0.
The embedded bus lives in the process, so a restart cannot seek to the checkpoint's offsets: the learner
restores its checkpoint and the source publishes again from the checkpoint's next bar
(``LearnerService.resume_ms``), so no bar is lost and none is published twice to the lake.

With ``CONTINUUM_BUS__KIND=kafka`` each role is its own process, as in compose.yaml: ``continuum live``
starts ``continuum live --role source``, ``--role learner`` and ``--role dashboard`` with the same options,
forwards SIGINT/SIGTERM (stopping the source first, then the learner, which checkpoints, then the
dashboard) and stops the others if one of them fails. ``--print`` shows the three commands instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from commands import dashboard, learn
from commands.options import add_metrics_option, config_option, serve_metrics, split_list
from continuum.config import BUNDLED_DATA, Config
from continuum.errors import UserError

PRETRAINED = BUNDLED_DATA.parent / "hope_pretrained.pt"
REPO = Path(__file__).resolve().parent.parent
ROLES = ("source", "learner", "dashboard")

EPILOG = """\
examples:
  continuum live --replay --speed 3600                      # bundled history from --start, an hour a second
  continuum live --replay --symbols BTC/USDT,ETH/USDT,SOL/USDT --start 2024-03-01
  continuum live --exchange binance --symbols BTC/USDT,ETH/USDT   # the exchange's websockets, closed bars
  CONTINUUM_BUS__KIND=kafka continuum live --replay         # the same roles as three processes on Kafka
  CONTINUUM_BUS__KIND=kafka continuum live --print          # only show the three commands

Dashboard on http://127.0.0.1:8501 (--dashboard-port; --no-dashboard). Ctrl-C or SIGTERM stops everything,
checkpoint first; running the same command again resumes after the checkpointed bar. Signals land in
[lake].root; `continuum signals` prints the latest ones.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_argument_group("source")
    src.add_argument("--replay", action="store_true", help="replay history from --data instead of an exchange")
    src.add_argument("--data", default=None, help="freqtrade-style data dir for --replay (default: bundled Binance 1h)")
    src.add_argument("--start", default="2024-03-01", help="--replay: first bar (default %(default)s)")
    src.add_argument("--end", default=None, help="--replay: stop before this date (default: the data's end)")
    src.add_argument(
        "--speed",
        type=float,
        default=3600.0,
        help="--replay: times real time (default 3600: an hour bar a second; 0: as fast as possible)",
    )
    src.add_argument(
        "--since",
        default=None,
        help="exchange: first bar on the first run (default 30 days ago: the model's warm-up); later runs "
        "resume after the checkpointed bar",
    )
    src.add_argument("--exchange-url", metavar="URL", help="send every exchange request to this host instead")
    config_option(
        src,
        "--no-rate-limit",
        key="exchange.rate_limit",
        action="store_const",
        const=False,
        help="turn off ccxt's rate limiter (only for your own servers; [exchange].rate_limit)",
    )
    lrn = p.add_argument_group("learner")
    learn.add_learner_options(lrn, group="live")
    lrn.add_argument("--max-bars", type=int, default=None, help="stop after the learner processed N bars (tests)")
    dash = p.add_argument_group("dashboard")
    dash.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    dash.add_argument("--dashboard-port", type=int, default=8501, help="default %(default)s")
    dash.add_argument("--dashboard-address", default="127.0.0.1", help="default %(default)s; 0.0.0.0 for all")
    add_metrics_option(p)
    p.add_argument(
        "--role",
        choices=("all", *ROLES),
        default="all",
        help="run one role only (Kafka: the processes `continuum live` starts, or compose.yaml's services)",
    )
    p.add_argument("--print", action="store_true", help="Kafka: print the roles' commands instead of running them")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not cfg.learner.pretrained and PRETRAINED.is_file():
        cfg.learner.pretrained = str(PRETRAINED)  # the shipped meta-weights
    if args.max_bars is not None and args.max_bars < 1:
        raise UserError("--max-bars must be >= 1")
    if args.speed < 0:
        raise UserError("--speed must be >= 0 (0: as fast as possible)")
    if not 1 <= args.dashboard_port <= 65535:
        raise UserError(f"--dashboard-port must be 1..65535, got {args.dashboard_port}")
    kafka = cfg.bus.kind == "kafka"
    if args.role == "all" and (kafka or args.print):
        if not kafka:
            raise UserError("--print: the embedded bus runs every role in this one process; nothing to print")
        return _supervise(args)
    if args.role == "dashboard":
        return _dashboard_only(args, cfg)
    if not kafka and args.role != "all":
        raise UserError(f"--role {args.role} needs a shared bus: set CONTINUUM_BUS__KIND=kafka")
    if args.role == "all" and not args.no_dashboard:  # a busy port is one line before anything starts
        try:
            dashboard.check_port(args.dashboard_address, args.dashboard_port)
        except UserError as e:
            raise UserError(str(e).replace("--port N", "--dashboard-port N")) from None
    return _run_roles(args, cfg, source=args.role in ("all", "source"), learner=args.role in ("all", "learner"))


# ----------------------------------------------------------------------------- one process
def _run_roles(args: argparse.Namespace, cfg: Config, source: bool, learner: bool) -> int:
    """Source and/or learner in this process, the dashboard as a child (role ``all``)."""
    from continuum.bus_factory import make_bus

    metrics = serve_metrics(args)
    bus = make_bus(cfg)
    stop = threading.Event()
    svc = None
    if learner:
        # the embedded bus is new in every process: the source, not the offsets, resumes after the checkpoint
        svc = learn.build_service(args, cfg, bus, metrics=metrics, resume_offsets=cfg.bus.kind == "kafka")
        svc.restore()
        resume = svc.resume_ms()
        if svc.restored_from is not None:
            _say(f"restored {svc.restored_from.name}: the source resumes at bar {_when(resume)}")
    else:
        resume = _checkpoint_resume_ms(args, cfg)

    def on_signal(signum, _frame) -> None:
        _say(f"{signal.Signals(signum).name}: stopping (checkpoint first)")
        stop.set()
        if svc is not None:
            svc.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failure: list[BaseException] = []
    feed = None
    if source:
        publish = _source(args, cfg, bus, resume, stop, metrics)

        def feed_main() -> None:
            try:
                publish()
            except BaseException as e:  # the learner must not wait for a source that died
                failure.append(e)
                stop.set()
                if svc is not None:
                    svc.stop()

        feed = threading.Thread(target=feed_main, name="continuum-live-source", daemon=True)
        feed.start()
    child = None
    if args.role == "all" and not args.no_dashboard:
        child = _start_dashboard(args, cfg)
    try:
        if svc is not None:
            svc.run(max_bars=args.max_bars)
        else:
            while not stop.is_set() and feed is not None and feed.is_alive():
                stop.wait(0.5)
    finally:
        stop.set()
        if feed is not None:
            feed.join(timeout=30)
        if child is not None:
            _stop_child(child, "dashboard")
        bus.close()
        if metrics is not None:
            metrics.close()
    if failure:
        e = failure[0]
        if isinstance(e, UserError):
            raise e
        raise UserError(f"the source failed: {type(e).__name__}: {e}") from e
    _say("stopped")
    return 0


def _source(args, cfg: Config, bus, resume: int | None, stop: threading.Event, metrics):
    """A function that publishes the configured source onto ``bus`` until ``stop`` (run in a thread)."""
    symbols = split_list(cfg.exchange.symbols) or []
    if args.replay:
        return lambda: _replay(args, cfg, bus, symbols, resume, stop, metrics)
    return lambda: _exchange(args, cfg, bus, symbols, resume, stop, metrics)


def _replay(args, cfg: Config, bus, symbols: list[str], resume: int | None, stop: threading.Event, metrics) -> None:
    """History published bar by bar at ``--speed`` times real time; from the checkpoint's next bar on a restart."""
    from continuum.timeframes import from_ms, parse_date, timeframe_ms
    from ingest.replay import load_panel, replay_events

    start = parse_date(args.start, "--start")
    if resume is not None:
        start = from_ms(resume)
    panel = load_panel(args.data or BUNDLED_DATA, symbols, cfg.exchange.timeframe, start, parse_date(args.end, "--end"))
    step_ms = timeframe_ms(cfg.exchange.timeframe)
    delay = step_ms / 1000 / args.speed if args.speed > 0 else 0.0
    t_first = int(panel.times[0])
    began = time.monotonic()
    _say(
        f"replaying {len(panel.symbols)} symbols from {_when(t_first)} ({len(panel.times)} bars) "
        + (f"at {args.speed:g}x: a bar every {delay:.3g}s" if delay else "as fast as possible")
    )
    n = 0
    for c in replay_events(panel, cfg.exchange.name):
        if delay:  # bar i is published once it has closed on the accelerated clock
            due = began + ((c.ts - t_first) // step_ms + 1) * delay
            while not stop.is_set() and (wait := due - time.monotonic()) > 0:
                stop.wait(min(wait, 0.5))
        if stop.is_set():
            break
        bus.publish(c)
        n += 1
        if metrics is not None:
            metrics.count("continuum_events", topic=c.TOPIC, direction="out")
    bus.flush()
    _say(f"replay {'stopped' if stop.is_set() else 'finished'}: {n} candles published")


def _exchange(args, cfg: Config, bus, symbols: list[str], resume: int | None, stop: threading.Event, metrics) -> None:
    """Closed candles from the exchange's websockets, from ``resume`` (or ``--since``) over REST first."""
    import asyncio

    from commands.market import observe_stream
    from continuum.timeframes import date_ms
    from ingest.market import MarketStream, check_symbols, check_timeframe, connect

    since = resume if resume is not None else date_ms(args.since, "--since")
    if since is None:
        since = int(time.time() * 1000) - 30 * 86_400_000

    async def main() -> None:
        ex = connect(cfg.exchange.name, url=args.exchange_url, rate_limit=cfg.exchange.rate_limit, pro=True)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
        try:
            check_timeframe(ex, cfg.exchange.timeframe)
            syms = check_symbols(await ex.load_markets(), symbols, ex.id)
            stream = MarketStream(ex, bus, syms, cfg.exchange.timeframe, since_ms=since)
            if metrics is not None:
                observe_stream(metrics, stream)
            _say(f"streaming {', '.join(syms)} {cfg.exchange.timeframe} from {ex.id} since {_when(since)}")
            stats = await stream.run(done)
            _say(f"source stopped: {stats.published_candles} candles, {stats.reconnects} reconnects")
        finally:
            await ex.close()

    asyncio.run(main())


def _checkpoint_resume_ms(args, cfg: Config) -> int | None:
    """The learner's next bar from its newest checkpoint (the source role of a Kafka deployment)."""
    from learner.service import checkpoint_resume_ms

    return checkpoint_resume_ms(cfg.learner.checkpoint_dir, args.group)


# ----------------------------------------------------------------------------- the dashboard
def _dashboard_argv(args: argparse.Namespace, cfg: Config) -> list[str]:
    return ["dashboard", "--port", str(args.dashboard_port), "--address", args.dashboard_address,
            "--lake", cfg.lake.root]  # fmt: skip


def _start_dashboard(args: argparse.Namespace, cfg: Config) -> subprocess.Popen:
    """``continuum dashboard`` (its launcher: port check, health wait, the server stopped with it) as a child."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-m", "commands.cli", *_dashboard_argv(args, cfg)], env=env)
    _say(f"starting the dashboard on http://{args.dashboard_address}:{args.dashboard_port} (launcher pid {child.pid})")
    return child


def _dashboard_only(args: argparse.Namespace, cfg: Config) -> int:
    """The dashboard role: ``continuum dashboard``'s launcher in this process (it handles SIGINT/SIGTERM)."""
    p = argparse.ArgumentParser()
    dashboard.add_arguments(p)
    return dashboard.run(p.parse_args(_dashboard_argv(args, cfg)[1:]), cfg)


def _stop_child(child: subprocess.Popen, name: str, timeout_s: float = 20.0) -> int:
    """SIGTERM, wait, then SIGKILL: the child is gone when this returns."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _say(f"{name} (pid {child.pid}) did not stop within {timeout_s:.0f}s: killed")
            child.kill()
            child.wait()
    return child.returncode


# ----------------------------------------------------------------------------- Kafka: one process per role
def _role_argv(args: argparse.Namespace, role: str) -> list[str]:
    """This command line with ``--role``; metrics: the learner on ``--metrics-port``, the source on the next one."""
    argv, skip = [], False
    for a in getattr(args, "_argv", sys.argv[1:]):
        if skip or a == "--print" or a.startswith("--metrics-port"):
            skip = a == "--metrics-port"
            continue
        argv.append(a)
    if args.metrics_port is not None and role != "dashboard":
        argv += ["--metrics-port", str(args.metrics_port + (role == "source"))]
    return [*argv, "--role", role]


def _supervise(args: argparse.Namespace) -> int:
    """Start the roles as processes; stop them in order on SIGINT/SIGTERM or when one of them ends."""
    roles = [r for r in ROLES if not (r == "dashboard" and args.no_dashboard)]
    cmds = {r: _role_argv(args, r) for r in roles}
    if args.print:
        for r, argv in cmds.items():
            print(f"# {r}\nCONTINUUM_BUS__KIND=kafka continuum " + " ".join(_quote(a) for a in argv))
        print("# with Docker: docker compose up (compose.yaml: market-ingest, learner, dashboard)")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    children: dict[str, subprocess.Popen] = {}
    env = dict(os.environ)
    for r in ("learner", "source", "dashboard"):  # the learner first: it creates the topics and joins its group
        if r in cmds:
            children[r] = subprocess.Popen([sys.executable, "-m", "commands.cli", *cmds[r]], env=env)
            _say(f"started {r} (pid {children[r].pid})")
    failed = None
    while not stop.is_set():  # a replay source that finished (exit 0) is no reason to stop the learner
        ended = [r for r, c in children.items() if c.poll() is not None and (c.returncode or r != "source")]
        if ended:
            failed = ended[0]
            break
        stop.wait(0.5)
    if failed:
        _say(f"{failed} exited with code {children[failed].returncode}: stopping the others")
    for r in ("source", "learner", "dashboard"):  # no new candles, then the checkpoint, then the view
        if r in children:
            _stop_child(children[r], r, timeout_s=60.0 if r == "learner" else 20.0)
    bad = failed is not None and children[failed].returncode not in (0, -signal.SIGTERM)
    return 1 if bad else 0


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


def _when(ms: int | None) -> str:
    from continuum.timeframes import from_ms

    return "-" if ms is None else from_ms(ms).strftime("%Y-%m-%d %H:%M")


def _say(msg: str) -> None:
    print(f"continuum live: {msg}", file=sys.stderr, flush=True)
