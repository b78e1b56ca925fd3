"""``continuum alerts``: alert rules on the lake's transfers (a list of past hits), or, with ``--follow``,
every rule on the live signal feed and newly ingested transfers, posted to webhooks and logged.

The listing runs :func:`forensics.queries.alerts`; ``--follow`` runs :class:`alerts.engine.Alerter` on the
bus (Kafka) or on the lake (the embedded default); ``--send-test`` posts one test alert to each webhook.
Argument parsing imports nothing heavy. docs/alerts.md has the rules, the configuration and the guarantees.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from commands.forensics import _common, _date, _engine, _engine_options, _lake, _print
from commands.options import add_metrics_option, config_option, serve_metrics
from continuum.config import Config
from continuum.errors import UserError

DESCRIPTION = """\
Without --follow: the transfer rules over the lake's transfers in a time range, hits listed newest first:
  sanctioned        a transfer from or to an OFAC-sanctioned address           (high)
  exploit           funds moving to or from a known exploit/attacker address   (high)
  mixer_deposit     a deposit into a mixer (Tornado Cash pools)                (medium)
  mixer_withdrawal  a withdrawal out of a mixer                                (medium)
  phishing          funds sent to a known phishing address                     (medium)
  large             a transfer at or over the --large threshold for its token  (low)
  watch             any transfer touching a --watch address                    (low)

With --follow: those rules on newly ingested transfers, and these on the signal feed, as they come:
  signal            a confident forecast: confidence >= [alerts].confidence    (low)
                    or |24h return| / 24h vol >= [alerts].zscore
  regime_switch     the model's regime word changed and held [alerts].regime_hold bars   (medium)
  vol_spike         24h vol forecast >= [alerts].vol_spike x its trailing median        (high)
Each alert is written to the lake's `alert` table, logged as one line (ALERT rule=... key=...) and
POSTed to every webhook in [alerts].webhooks (Slack, Discord or JSON), with retries. An alert is never
posted twice for one key across restarts, except when the process dies between a webhook's answer and
its journal line; one that was not delivered yet is posted after a restart (docs/alerts.md).
"""

EPILOG = """\
examples:
  continuum alerts --start 2023-05-01 --end 2023-05-03                 # past transfer-rule hits
  continuum alerts --rules sanctioned,mixer_deposit --format json
  continuum alerts --large WETH=50 --watch 0xabc...,0xdef...

  export CONTINUUM_ALERTS__WEBHOOKS="https://hooks.slack.com/services/T0/B0/XXXX"   # a secret: not in argv
  continuum alerts --send-test                                          # one test post per webhook
  continuum alerts --follow                                             # run until Ctrl-C / SIGTERM
  continuum alerts --follow --once                                      # catch up, deliver, exit (cron)
  continuum alerts --follow --since 2024-03-01 --dry-run --once         # what would have fired: no posts
  CONTINUUM_BUS__KIND=kafka continuum alerts --follow --group alerts    # from the topics, not the lake

configuration ([alerts] in continuum.toml, or CONTINUUM_ALERTS__<KEY>): webhooks, rules, confidence,
zscore, vol_spike, vol_window, regime_hold, large, watch, tries, backoff_s, backoff_max_s, timeout_s,
queue_size, redeliver_s, max_age_h, state_dir, poll_s.
"""


class _JoinAppend(argparse.Action):
    """A repeatable option whose values are joined with commas (``--large A=1 --large B=2`` = ``A=1,B=2``)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        old = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{old},{values}" if old else values)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from forensics.rules import DEFAULT_LARGE

    p.description = DESCRIPTION
    p.epilog = (
        EPILOG + "\ndefault large thresholds: " + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_LARGE.items()) + "\n"
    )
    _common(p, with_address=False)
    _engine_options(p)
    p.epilog = p.epilog.replace("\ndata: ", "\n\ndata: ", 1)
    config_option(p, "--rules", key="alerts.rules", help="comma-separated rules (default [alerts].rules: all)")
    config_option(
        p,
        "--large",
        key="alerts.large",
        action=_JoinAppend,
        metavar="SYMBOL=AMOUNT",
        help="large-transfer threshold, repeatable or comma-separated ([alerts].large)",
    )
    config_option(p, "--watch", key="alerts.watch", metavar="ADDR,...", help="addresses to alert on ([alerts].watch)")
    g = p.add_argument_group("follow (live rules, webhooks)")
    g.add_argument("--follow", action="store_true", help="run the rules on new signals and transfers as they come")
    g.add_argument("--once", action="store_true", help="with --follow: catch up, deliver, exit")
    g.add_argument("--since", metavar="DATE", help="with --follow: also fire for bars and transfers from DATE on")
    g.add_argument("--dry-run", action="store_true", help="with --follow: log alerts only; post and write nothing")
    g.add_argument("--group", default=None, help="with --follow on Kafka: consumer group (default alerts)")
    g.add_argument("--idle-exit", type=float, default=None, metavar="S", help="with --follow: stop after S idle s")
    g.add_argument("--drain", type=float, default=30.0, metavar="S", help="at exit, wait up to S s for webhooks")
    config_option(g, "--state-dir", key="alerts.state_dir", metavar="DIR", help="default [alerts].state_dir")
    add_metrics_option(g)
    g.add_argument("--send-test", action="store_true", help="post one test alert to every webhook and report")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if (args.engine != "polars" or args.spark_master) and (args.follow or args.send_test):
        raise UserError("--engine spark lists past hits; --follow and --send-test run on this machine")
    if args.send_test:
        return _send_test(cfg)
    if args.follow:
        return _follow(args, cfg)
    follow_only = [f for f, v in (("--once", args.once), ("--since", args.since), ("--dry-run", args.dry_run),
                                  ("--group", args.group), ("--idle-exit", args.idle_exit),
                                  ("--metrics-port", args.metrics_port)) if v]  # fmt: skip
    if follow_only:
        raise UserError(f"{follow_only[0]} needs --follow")
    return _list(args, cfg)


# --------------------------------------------------------------------------- list past hits
def _list(args: argparse.Namespace, cfg: Config) -> int:
    from alerts.engine import Settings
    from alerts.rules import SIGNAL_RULES

    s = Settings.from_config(cfg)
    signal_rules = [r for r in s.rules if r in SIGNAL_RULES]
    if args.rules is not None and signal_rules:
        raise UserError(
            f"--rules: {', '.join(signal_rules)} run on the signal feed: add --follow "
            "(with --since DATE --dry-run --once to replay the lake's history)"
        )
    if not s.transfer_rules:
        raise UserError("--rules: name at least one transfer rule (sanctioned, large, ...)")
    engine = _engine(args, cfg)
    df = engine.alerts(
        engine.source,
        start=_date(args.start, "--start"),
        end=_date(args.end, "--end"),
        rules=s.transfer_rules,
        large=s.large,
        watch=s.watch,
        token=args.token,
    )
    if df.is_empty() and args.format == "table":
        print("no alerts: no transfer in the lake hit these rules in this time range")
        return 0
    _print(df, args.format, args.limit, "alerts")
    if args.format == "table":
        counts = df.group_by("rule").len().sort("len", descending=True)
        print("\n" + ", ".join(f"{r}: {n}" for r, n in counts.iter_rows()) + f" ({df.height} hits)")
        if args.limit and df.height > args.limit:
            print(f"showing {args.limit} of {df.height}; --limit 0 shows all", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- follow
def _logging(hooks: list[Any]) -> None:
    from alerts.delivery import WebhookRedactor
    from continuum.redact import redact_logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("continuum.alerts").setLevel(logging.INFO)
    redact_logging(*(h.url for h in hooks))
    for handler in logging.getLogger().handlers:
        handler.addFilter(WebhookRedactor(hooks))


def _follow(args: argparse.Namespace, cfg: Config) -> int:
    import signal
    import threading
    import time

    from alerts.engine import Alerter, Settings, follow_bus, follow_lake

    for flag, value in (("--token", args.token), ("--start", args.start), ("--end", args.end)):
        if value:
            raise UserError(f"{flag} filters the listing of past hits; with --follow use --since DATE")
    settings = Settings.from_config(cfg)
    since = _date(args.since, "--since")
    since_ms = None if since is None else int(since.timestamp() * 1000)
    if args.idle_exit is not None and args.idle_exit <= 0:
        raise UserError(f"--idle-exit must be > 0, got {args.idle_exit}")
    _logging(settings.hooks)
    kafka = cfg.bus.kind == "kafka"
    bus = None
    if kafka:
        from continuum.bus_factory import make_bus

        bus = make_bus(cfg)
    lake = _lake(args, cfg)
    fire_from = since_ms if since_ms is not None else int((time.time() - settings.max_age_s) * 1000)
    alerter = Alerter(cfg, lake=lake, bus=bus, dry_run=args.dry_run, fire_from_ms=fire_from, drain_s=args.drain)
    where = f"bus {cfg.kafka.bootstrap_servers}" if kafka else f"lake {cfg.lake.root}"
    hooks = ", ".join(f"{h.format} {h.shown}" for h in settings.hooks) or "none (log only)"
    print(
        f"continuum alerts: rules {','.join(settings.rules)} on {where}; webhooks: {hooks}"
        + (" [dry run]" if args.dry_run else ""),
        file=sys.stderr,
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    metrics = None
    try:
        metrics = _metrics(args, alerter)
        if kafka:
            group = args.group or "alerts"
            on_poll = None if metrics is None else _observe_consumer(metrics)
            follow_bus(alerter, bus, group=group, stop=stop, once=args.once, idle_exit_s=args.idle_exit,
                       on_poll=on_poll)  # fmt: skip
        else:
            follow_lake(alerter, lake, since_ms=since_ms, stop=stop, once=args.once, idle_exit_s=args.idle_exit)
    finally:
        left = alerter.close()
        for s, h in previous.items():
            signal.signal(s, h)
        if bus is not None:
            bus.close()
        if metrics is not None:
            metrics.close()
    fired = sum(alerter.fired.values())
    by_rule = ", ".join(f"{r} {n}" for r, n in sorted(alerter.fired.items()))
    sent = sum(s.sent for s in alerter.senders)
    print(
        f"continuum alerts: {fired} fired" + (f" ({by_rule})" if by_rule else "") + f"; {sent} posts delivered"
        + (f"; {left} left pending for the next start" if left else ""),
        file=sys.stderr,
    )  # fmt: skip
    return 0


def _metrics(args: argparse.Namespace, alerter: Any):
    """``--metrics-port``: the alerter's inputs, alerts by rule, webhook outcomes and backlog, read when scraped."""
    from alerts.rules import SEVERITY
    from continuum.schema import Signal, Transfer

    metrics = serve_metrics(args)
    if metrics is None:
        return None
    for topic in (Signal.TOPIC, Transfer.TOPIC):
        metrics.counter_from("continuum_events", lambda t=topic: alerter.seen[t], topic=topic, direction="in")
    for rule in alerter.settings.rules:
        metrics.counter_from("continuum_alerts", lambda r=rule: alerter.fired.get(r, 0), rule=rule,
                             severity=SEVERITY[rule])  # fmt: skip
    for sender in alerter.senders:
        hook = sender.hook.id
        metrics.counter_from("continuum_webhook_posts", lambda s=sender: s.sent, hook=hook, outcome="delivered")
        metrics.counter_from("continuum_webhook_posts", lambda s=sender: s.failed, hook=hook, outcome="failed")
    metrics.gauge_from("continuum_alert_backlog", alerter.backlog)
    return metrics


def _observe_consumer(metrics: Any):
    """After each poll: the consumer's lag; its dead letters, registered once (read when scraped)."""
    registered: list[Any] = []

    def observe(consumer: Any) -> None:
        if not registered:
            registered.append(consumer)
            metrics.counter_from("continuum_deadletters", lambda: consumer.deadletters)
        metrics.set_lag(consumer.lag())

    return observe


# --------------------------------------------------------------------------- send a test
def _send_test(cfg: Config) -> int:
    import socket
    import time

    from alerts.delivery import post
    from alerts.engine import Settings
    from continuum.schema import Alert

    s = Settings.from_config(cfg)
    if not s.hooks:
        raise UserError("no webhooks to test: set [alerts].webhooks (or CONTINUUM_ALERTS__WEBHOOKS)")
    _logging(s.hooks)
    now = int(time.time() * 1000)
    host = socket.gethostname()
    alert = Alert(
        f"test:{host}:{now}",
        now,
        "test",
        "TEST",
        "low",
        f"test alert from continuum on {host}: this webhook receives Continuum's alerts",
        now,
        {},
    )
    failed = 0
    for h in s.hooks:
        out = post(h, alert, s.policy)
        ok = out.status == "delivered"
        failed += not ok
        how = f"HTTP {out.http}" if out.http else out.error
        print(f"{h.format:8s} {h.shown}: {out.status} ({how}, {out.tries} tr{'y' if out.tries == 1 else 'ies'})")
        if not ok and out.error and out.http:
            print(f"         {out.error}")
    return 1 if failed else 0
