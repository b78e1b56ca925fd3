"""``continuum scheduler``: the recurring jobs of a running installation, on APScheduler 3 (UTC).

Jobs (cron, UTC):
- ``backfill`` (hourly at :05): closes gaps in the lake's candles for ``[exchange].symbols`` by resuming
  each symbol after its newest stored bar (``ingest.market.backfill_ohlcv``). A symbol the lake has
  never seen is skipped with a hint: where history starts is a user decision (``backfill market --since``).
- ``retention`` (hourly at :30): keeps the newest ``[learner].keep_checkpoints`` files of
  ``[learner].checkpoint_dir`` by modification time; hidden files (atomic writes in flight) and the
  pre-trained checkpoint named in ``[learner].pretrained`` are never removed.
- ``nightly`` (02:00): ``continuum evaluate`` and ``continuum backtest`` on a reduced scope (two assets,
  a short pre-training) into ``<reports>/<YYYY-MM-DD>/{evaluate,backtest}``; ``<reports>/latest`` points
  at the newest. Each runs as a child process, so a crash or a leak in one night's run cannot take the
  scheduler down.

``--once JOB`` runs one job now and exits (what tests and cron-less hosts use); ``--list`` prints the
jobs with their next run times; ``--now JOB,...`` runs those jobs at start too, then on schedule (a fresh
install backfills at once instead of at the next :05). Jobs never overlap themselves, and a missed run
(host asleep) runs once when possible, not once per missed slot. ``--metrics-port`` serves each job's runs
by outcome, run times, last success and next run (continuum/metrics.py) for an alert on a job that stopped
succeeding.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from commands.options import add_metrics_option, config_option, serve_metrics, split_list
from continuum.config import Config
from continuum.errors import UserError

log = logging.getLogger("continuum.scheduler")

EPILOG = """\
examples:
  continuum scheduler                               # run every job on its schedule (Ctrl-C stops)
  continuum scheduler --list                        # the jobs and when each runs next
  continuum scheduler --now backfill --metrics-port 9464   # backfill at start; Prometheus on :9464
  continuum scheduler --once retention --keep 3     # prune checkpoints now, keep the newest 3
  continuum scheduler --once nightly --reports out/reports --nightly-symbols BTC/USDT
  continuum scheduler --once backfill --exchange-url http://127.0.0.1:8123   # against a mirror

jobs (UTC): backfill hourly at :05, retention hourly at :30, nightly at 02:00.
configuration: [exchange] (name, symbols, timeframe), [lake].root, [learner] (checkpoint_dir,
keep_checkpoints, pretrained) in continuum.toml or CONTINUUM_<SECTION>__<KEY>.
"""

JOB_NAMES = ("backfill", "retention", "nightly")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--once", choices=JOB_NAMES, metavar="JOB", help=f"run one job now, exit ({', '.join(JOB_NAMES)})")
    p.add_argument("--list", action="store_true", help="print the jobs and their next run times, then exit")
    p.add_argument("--now", metavar="JOB,...", help="also run these jobs at start, then on their schedule")
    add_metrics_option(p)
    config_option(
        p, "--keep", key="learner.keep_checkpoints", type=int, help="checkpoints to keep ([learner].keep_checkpoints)"
    )
    config_option(p, "--checkpoint-dir", key="learner.checkpoint_dir", help="default [learner].checkpoint_dir")
    config_option(p, "--lake", key="lake.root", help="lake root for backfills (default [lake].root)")
    p.add_argument("--exchange-url", default=None, help="send backfill requests to this host (mirror, local exchange)")
    p.add_argument("--no-backfill", action="store_true", help="do not schedule the backfill job")
    p.add_argument("--reports", default=".continuum/reports", help="where nightly reports go (default %(default)s)")
    p.add_argument("--data", default=None, help="data dir for nightly runs (default: bundled Binance 1h)")
    p.add_argument("--nightly-symbols", default="BTC/USDT,ETH/USDT", help="nightly scope (default %(default)s)")
    p.add_argument("--nightly-models", default="hope,har", help="evaluate these; backtest the first (%(default)s)")
    p.add_argument("--nightly-start", default=None, help="nightly runs ignore bars before this date")
    p.add_argument("--nightly-end", default=None, help="nightly runs ignore bars from this date on")
    p.add_argument("--nightly-pretrain-until", default="2018-12-15", help="(default %(default)s)")
    p.add_argument("--nightly-pretrain-steps", type=int, default=100, help="(default %(default)s)")


@dataclass
class JobSpec:
    name: str
    trigger: object  # an APScheduler trigger
    fn: Callable[[], object]
    what: str


# ----------------------------------------------------------------------------- the jobs
def retain(directory: str | Path, keep: int, protect: tuple[str | Path, ...] = ()) -> list[Path]:
    """Delete all but the ``keep`` newest regular files of ``directory`` (by mtime, then name); returns them.

    Hidden files are skipped (``learner.checkpoint.atomic_save`` writes ``.name.tmp`` before renaming),
    as are symbolic links and anything in ``protect``.
    """
    if keep < 1:
        raise UserError(f"--keep must be at least 1, got {keep}")
    d = Path(directory)
    if not d.is_dir():
        return []
    guarded = {Path(p).resolve() for p in protect if p}
    files = [
        f
        for f in d.iterdir()
        if f.is_file() and not f.is_symlink() and not f.name.startswith(".") and f.resolve() not in guarded
    ]
    files.sort(key=lambda f: (f.stat().st_mtime_ns, f.name), reverse=True)
    removed = []
    for f in files[keep:]:
        f.unlink(missing_ok=True)
        removed.append(f)
    return removed


def backfill_lake(cfg: Config, lake_root: str, exchange_url: str | None = None) -> dict[str, int | None]:
    """Resume every configured symbol after the lake's newest bar; {symbol: new rows, or None if skipped}."""
    from continuum.lake import Lake
    from ingest.market import backfill_ohlcv, check_timeframe, connect

    symbols = [s.strip() for s in cfg.exchange.symbols.split(",") if s.strip()]
    ex = connect(cfg.exchange.name, url=exchange_url, rate_limit=cfg.exchange.rate_limit)
    check_timeframe(ex, cfg.exchange.timeframe)
    lake = Lake(lake_root)
    out: dict[str, int | None] = {}
    for sym in symbols:
        if lake.last_ts("candle", exchange=ex.id, symbol=sym, timeframe=cfg.exchange.timeframe) is None:
            log.warning(
                "backfill %s: not in the lake yet; start with `continuum backfill market --symbols %s --since DATE`",
                sym,
                sym,
            )
            out[sym] = None
            continue
        r = backfill_ohlcv(ex, lake, sym, cfg.exchange.timeframe, None, progress=False)
        log.info("backfill %s %s: %d new bars (%d requests)", ex.id, sym, r.written, r.requests)
        out[sym] = r.written
    return out


def nightly_commands(args: argparse.Namespace, day: str) -> list[list[str]]:
    """The ``continuum evaluate`` and ``continuum backtest`` command lines of one night's reports."""
    base = [sys.executable, "-m", "commands.cli"]
    if getattr(args, "config", None):
        base += ["--config", args.config]
    root = Path(args.reports) / day
    models = [m.strip() for m in args.nightly_models.split(",") if m.strip()]
    if not models:
        raise UserError("--nightly-models must name at least one model")
    scope = ["--symbols", args.nightly_symbols, "--pretrain-until", args.nightly_pretrain_until]
    scope += ["--pretrain-steps", str(args.nightly_pretrain_steps), "--quiet"]
    for flag, v in (("--data", args.data), ("--start", args.nightly_start), ("--end", args.nightly_end)):
        if v:
            scope += [flag, v]
    return [
        [*base, "evaluate", "--out", str(root / "evaluate"), "--models", ",".join(models), *scope],
        [*base, "backtest", "--out", str(root / "backtest"), "--model", models[0], *scope],
    ]


def nightly(args: argparse.Namespace, now: datetime | None = None) -> Path:
    """Run the nightly evaluation and backtest; returns the dated directory. Raises if either fails."""
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    root = Path(args.reports) / day
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for cmd in nightly_commands(args, day):
        name = cmd[cmd.index("--out") - 1]
        with open(root / f"{name}.log", "w") as logf:
            rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode
        if rc != 0:
            raise RuntimeError(f"nightly {name} exited {rc}; see {root / f'{name}.log'}")
        log.info("nightly %s -> %s", name, root / name)
    latest = Path(args.reports) / "latest"
    tmp = Path(args.reports) / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(day, target_is_directory=True)
    os.replace(tmp, latest)
    return root


def job_specs(args: argparse.Namespace, cfg: Config) -> list[JobSpec]:
    from apscheduler.triggers.cron import CronTrigger

    keep, ckpt = cfg.learner.keep_checkpoints, cfg.learner.checkpoint_dir

    def retention() -> list[Path]:
        removed = retain(ckpt, keep, protect=(cfg.learner.pretrained,))
        log.info("retention %s: kept newest %d, removed %d", ckpt, keep, len(removed))
        return removed

    specs = []
    if not args.no_backfill and cfg.exchange.name and cfg.exchange.symbols.strip():
        specs.append(
            JobSpec(
                "backfill",
                CronTrigger(minute=5, timezone=UTC),
                lambda: backfill_lake(cfg, cfg.lake.root, args.exchange_url),
                f"candle gaps of {cfg.exchange.name} {cfg.exchange.symbols} {cfg.exchange.timeframe} into the lake",
            )
        )
    specs.append(
        JobSpec("retention", CronTrigger(minute=30, timezone=UTC), retention, f"keep the newest {keep} in {ckpt}")
    )
    specs.append(
        JobSpec(
            "nightly",
            CronTrigger(hour=2, minute=0, timezone=UTC),
            lambda: nightly(args),
            f"evaluate + backtest on {args.nightly_symbols} into {args.reports}/<date>",
        )
    )
    return specs


def build_scheduler(specs: list[JobSpec], now: tuple[str, ...] = (), metrics=None):
    """A blocking scheduler with ``specs``; jobs named in ``now`` also run at start. With ``metrics``
    (continuum.metrics.Metrics) each run is counted by outcome and timed, and missed runs are counted."""
    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.schedulers.blocking import BlockingScheduler

    sched = BlockingScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    )
    for s in specs:
        fn = s.fn if metrics is None else _measured(s.name, s.fn, metrics)
        first = {"next_run_time": datetime.now(UTC)} if s.name in now else {}
        sched.add_job(fn, s.trigger, id=s.name, name=s.what, **first)
    if metrics is not None:
        sched.add_listener(
            lambda ev: metrics.count("continuum_job_runs", job=ev.job_id, outcome="missed"), EVENT_JOB_MISSED
        )
        for s in specs:
            metrics.gauge_from("continuum_job_next_run_timestamp_seconds", _next_run(sched, s.name), job=s.name)
    return sched


def _measured(name: str, fn: Callable[[], object], metrics) -> Callable[[], object]:
    """``fn`` counted by outcome (ok, error), timed, and its last success kept for the metrics endpoint."""
    last_ok: list[float] = []
    metrics.gauge_from(
        "continuum_job_last_success_timestamp_seconds", lambda: last_ok[-1] if last_ok else float("nan"), job=name
    )

    def run() -> object:
        t0 = time.monotonic()
        try:
            out = fn()
        except BaseException:
            metrics.count("continuum_job_runs", job=name, outcome="error")
            raise
        finally:
            metrics.job_seconds.labels(name).observe(time.monotonic() - t0)
        metrics.count("continuum_job_runs", job=name, outcome="ok")
        last_ok.append(time.time())
        del last_ok[:-1]
        return out

    return run


def _next_run(sched, name: str) -> Callable[[], float]:
    def read() -> float:
        job = sched.get_job(name)
        return float("nan") if job is None or job.next_run_time is None else job.next_run_time.timestamp()

    return read


def run(args: argparse.Namespace, cfg: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    specs = job_specs(args, cfg)
    by_name = {s.name: s for s in specs}
    if args.list:
        now = datetime.now(UTC)
        for s in specs:
            nxt = s.trigger.get_next_fire_time(None, now)
            print(f"{s.name:<10} next {nxt:%Y-%m-%d %H:%M} UTC  {s.trigger}  {s.what}")
        return 0
    if args.once:
        if args.once not in by_name:
            raise UserError(f"job {args.once!r} is not scheduled with this configuration (see --list)")
        try:
            result = by_name[args.once].fn()
        except RuntimeError as e:
            print(f"continuum: {args.once} failed: {e}", file=sys.stderr)
            return 1
        if args.once == "retention":
            for f in result:
                print(f"removed {f}")
        elif args.once == "nightly":
            print(f"nightly reports in {result}")
        elif args.once == "backfill":
            for sym, n in result.items():
                print(f"{sym}: {'skipped (not in the lake yet)' if n is None else f'{n} new bars'}")
        return 0
    now = tuple(split_list(args.now) or ())
    for name in now:
        if name not in by_name:
            raise UserError(f"--now: job {name!r} is not scheduled with this configuration (scheduled: "
                            f"{', '.join(by_name)})")  # fmt: skip
    metrics = serve_metrics(args)
    sched = build_scheduler(specs, now, metrics)
    log.info("scheduler started (UTC): %s", ", ".join(by_name) + (f"; now: {', '.join(now)}" if now else ""))
    stop = lambda *_: sched.shutdown(wait=False)  # noqa: E731
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        sched.shutdown(wait=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if metrics is not None:
            metrics.close()
    return 0
