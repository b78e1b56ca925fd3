"""The alerter: rules on signals and transfers, the outbox, one log line per alert, the webhook senders.

In-process (``continuum live``, or any loop that has the signals in hand)::

    from alerts.engine import Alerter

    with Alerter(cfg, lake=lake, bus=bus) as alerter:   # cfg: continuum.config.Config; lake/bus optional
        for bar_signals in stream:
            alerter.on_signals(bar_signals)              # or on_signal(sig); returns the alerts that fired
        alerter.on_transfers(transfers)                  # newly ingested Transfer events

``on_signals`` and ``on_transfers`` run the rules, put new alerts in the outbox (the lake's ``alert`` table),
log one ``ALERT ...`` line each, publish them on the bus's ``alerts`` topic (when a bus is given), hand
them to the webhook senders (threads; the call never waits on a webhook) and save the rule state. Call
them with a bar's signals at once where you can: the state is written once per call. ``close()`` (or
leaving the ``with``) gives the senders up to ``drain_s`` to finish; what is left is posted by the next
alerter that starts on the same state directory.

Out of process, ``continuum alerts --follow`` runs :func:`follow_bus` (Kafka: a consumer group on
``signals`` and ``chain.transfers``, offsets committed after the state is saved) or :func:`follow_lake`
(the embedded default: new rows of the lake's ``signal`` and ``transfer`` tables, every ``poll_s``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.delivery import RetryPolicy, Sender, Webhook, parse_webhooks
from alerts.rules import (
    SEVERITY,
    TRANSFER_RULES,
    Hit,
    SignalThresholds,
    StreamState,
    parse_rules,
    signal_key,
    step,
    stream_of,
    transfer_key,
    transfer_message,
)
from continuum.config import Config, ConfigError
from continuum.errors import UserError
from continuum.schema import Alert, SchemaError, Signal, Transfer

log = logging.getLogger("continuum.alerts")
STATE_VERSION = 1


def parse_large(text: str) -> dict[str, float]:
    """``"WETH=50, USDC=1000000"`` -> ``{"WETH": 50.0, "USDC": 1e6}`` (ValueError naming the bad item)."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        sym, sep, val = item.partition("=")
        try:
            amount = float(val)
        except ValueError:
            amount = -1.0
        if not sep or not sym.strip() or not math.isfinite(amount) or amount < 0:
            raise ValueError(f"alerts.large: {item!r} is not SYMBOL=AMOUNT (e.g. WETH=50)")
        out[sym.strip()] = amount
    return out


@dataclass
class Settings:
    """Everything the alerter reads from ``[alerts]``, parsed and checked once."""

    rules: tuple[str, ...]  # every rule that runs, signal and transfer
    thresholds: SignalThresholds  # the signal rules' settings
    transfer_rules: tuple[str, ...]  # the forensics rules among ``rules``
    large: dict[str, float]  # large: per-symbol thresholds on top of forensics' defaults
    watch: tuple[str, ...]  # watch: lower-case addresses
    hooks: list[Webhook]  # where alerts are posted (secrets)
    policy: RetryPolicy  # tries, backoff, timeout of one alert to one webhook
    queue_size: int  # per webhook
    redeliver_s: float  # a sender's pass over the outbox
    max_age_s: float  # older alerts are not posted; older input only warms up (``--follow``)
    state_dir: Path  # rule state, journal, lock
    poll_s: float  # lake tail period

    @classmethod
    def from_config(cls, cfg: Config) -> Settings:
        """Raises :class:`ConfigError` (one line, secrets masked) on a bad value."""
        from forensics.addresses import parse_address

        a = cfg.alerts
        key = "alerts.rules"
        try:
            rules = parse_rules(a.rules)
            key = "alerts.large"
            large = parse_large(a.large)
            key = "alerts.watch"
            watch = tuple(parse_address(x.strip()) for x in a.watch.split(",") if x.strip())
            key = "alerts.webhooks"
            hooks = parse_webhooks(a.webhooks)
        except (ValueError, UserError) as e:
            msg = str(e) if str(e).startswith(key) else f"{key}: {e}"
            raise ConfigError(_where(cfg, key, msg), key) from None
        return cls(
            rules=rules,
            thresholds=SignalThresholds.from_config(a),
            transfer_rules=tuple(r for r in rules if r in TRANSFER_RULES),
            large=large,
            watch=watch,
            hooks=hooks,
            policy=RetryPolicy(a.tries, a.backoff_s, a.backoff_max_s, a.timeout_s),
            queue_size=a.queue_size,
            redeliver_s=a.redeliver_s,
            max_age_s=a.max_age_h * 3600.0,
            state_dir=Path(a.state_dir),
            poll_s=a.poll_s,
        )


def _where(cfg: Config, key: str, msg: str) -> str:
    where = getattr(cfg, "_origin", {}).get(key)
    return f"{where}: {msg}" if where else msg


class Alerter:
    """Rules -> outbox -> log line -> webhooks, for signals and transfers handed to it. See the module doc.

    ``dry_run``: nothing is written (no lake, no state, no journal) and nothing is posted; alerts are logged.
    ``fire_from_ms``: input about a bar or block older than this only updates the rule state (warm-up);
    ``None`` fires on everything. ``clock`` (seconds) is injectable for tests.
    """

    def __init__(
        self,
        cfg: Config,
        lake: Any | None = None,
        bus: Any | None = None,
        *,
        dry_run: bool = False,
        fire_from_ms: int | None = None,
        drain_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        from alerts.store import AlertStore

        self.settings = s = Settings.from_config(cfg)
        if lake is None and not dry_run:
            from continuum.lake import Lake

            lake = Lake(cfg.lake.root)
        self.lake, self.bus, self.dry_run = lake, bus, dry_run
        self.fire_from_ms, self.drain_s, self.clock = fire_from_ms, drain_s, clock
        self.store = AlertStore(
            None if dry_run else lake,
            None if dry_run else s.state_dir,
            keep_since_ms=int((clock() - s.max_age_s) * 1000),
        )
        state = self.store.load_state() or {}
        if state and state.get("version") != STATE_VERSION:
            state = {}
        self.streams: dict[str, StreamState] = {
            k: StreamState.from_dict(v) for k, v in state.get("streams", {}).items()
        }
        self.cursors: dict[str, Any] = dict(state.get("cursors", {}))  # follow_lake's positions
        self.fired: dict[str, int] = {}  # rule -> alerts fired by this process
        self.seen: dict[str, int] = {Signal.TOPIC: 0, Transfer.TOPIC: 0}  # topic -> events handed to the rules
        self._lock = threading.RLock()
        self.senders = [
            Sender(
                h,
                s.policy,
                self.store,
                queue_size=s.queue_size,
                redeliver_s=s.redeliver_s,
                max_age_s=s.max_age_s,
                clock=clock,
            )
            for h in ([] if dry_run else s.hooks)
        ]
        for sender in self.senders:
            sender.start()
        self._labels = None

    # ------------------------------------------------------------------ input
    def on_signal(self, sig: Signal) -> list[Alert]:
        return self.on_signals([sig])

    def on_signals(self, signals: Iterable[Signal], fire: bool = True) -> list[Alert]:
        """Run the signal rules on ``signals`` (in bar order per stream); returns the new alerts.

        ``fire=False`` only advances the rule state (warm-up over history)."""
        with self._lock:
            alerts: list[Alert] = []
            now_ms = self._now_ms()
            for sig in signals:
                self.seen[Signal.TOPIC] += 1
                k = stream_of(sig)
                state, hits = step(self.streams.get(k, StreamState()), sig, self.settings.thresholds)
                self.streams[k] = state
                if fire and (self.fire_from_ms is None or sig.ts >= self.fire_from_ms):
                    alerts += [self._alert(h, signal_key(h.rule, sig), sig.symbol, sig.ts, now_ms) for h in hits]
            return self._emit(alerts)

    def on_transfer(self, transfer: Transfer) -> list[Alert]:
        return self.on_transfers([transfer])

    def on_transfers(self, transfers: Iterable[Transfer]) -> list[Alert]:
        """Run the transfer rules on newly ingested transfers; returns the new alerts."""
        from continuum.lake import events_frame

        events = list(transfers)
        if not events or not self.settings.transfer_rules:
            return []
        return self.on_transfer_frame(events_frame(events))

    def on_transfer_frame(self, df: Any) -> list[Alert]:
        """The same for a polars frame with the lake's ``transfer`` columns (what :func:`follow_lake` reads)."""
        from forensics.queries import alerts as forensic_alerts
        from forensics.queries import labels_frame

        s = self.settings
        self.seen[Transfer.TOPIC] += df.height
        if df.is_empty() or not s.transfer_rules:
            return []
        if self._labels is None:
            self._labels = labels_frame()
        with self._lock:
            alerts: list[Alert] = []
            now_ms = self._now_ms()
            for (chain,), part in df.group_by("chain", maintain_order=True):
                hits = forensic_alerts(
                    part, rules=s.transfer_rules, large=s.large, watch=s.watch, labels=self._labels
                ).sort("ts", "log_index")
                for row in hits.iter_rows(named=True):
                    if self.fire_from_ms is not None and row["ts"] < self.fire_from_ms:
                        continue
                    key = transfer_key(row["rule"], chain, row["tx_hash"], row["log_index"])
                    detail = {k: row[k] for k in ("value", "from_address", "from_label", "to_address", "to_label",
                                                  "tx_hash", "log_index", "detail")}  # fmt: skip
                    detail["chain"] = chain
                    hit = Hit(row["rule"], transfer_message(row), detail)
                    alerts.append(self._alert(hit, key, row["symbol"] or "?", row["ts"], now_ms))
            return self._emit(alerts)

    # ------------------------------------------------------------------ output
    def _alert(self, hit: Hit, key: str, symbol: str, event_ts: int, now_ms: int) -> Alert:
        return Alert(key, now_ms, hit.rule, symbol, SEVERITY[hit.rule], hit.message, int(event_ts), hit.detail)

    def _emit(self, alerts: list[Alert]) -> list[Alert]:
        """Outbox first, then the state that produced them, then the log line, the bus and the senders."""
        new = self.store.record([a for a in alerts if not self.store.seen(a.key)], [s.hook.id for s in self.senders])
        self.save()
        for a in new:
            self.fired[a.rule] = self.fired.get(a.rule, 0) + 1
            log.warning(
                'ALERT rule=%s severity=%s symbol=%s key=%s event_time=%s msg="%s"',
                a.rule,
                a.severity,
                a.symbol,
                a.key,
                datetime.fromtimestamp(a.event_ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                a.message.replace('"', "'").replace("\n", " "),
            )
            if self.bus is not None:
                self.bus.publish(a)
            for sender in self.senders:
                sender.offer(a)  # a full queue leaves it in the outbox: the sender's next pass takes it
        return new

    def save(self) -> None:
        """Write the rule state and cursors (atomically). ``on_*`` call it; :func:`follow_lake` too."""
        if self.dry_run:
            return
        with self._lock:
            self.store.save_state(
                {
                    "version": STATE_VERSION,
                    "streams": {k: v.as_dict() for k, v in self.streams.items()},
                    "cursors": self.cursors,
                }
            )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ------------------------------------------------------------------ lifetime
    def backlog(self) -> int:
        """Alerts queued or in flight across the webhooks."""
        return sum(s.backlog() for s in self.senders)

    def close(self) -> int:
        """Let the senders deliver what is queued for up to ``drain_s`` seconds; returns what was left
        (it stays in the outbox and is posted by the next alerter on the same state directory)."""
        deadline = time.monotonic() + self.drain_s
        for s in self.senders:
            s.closing()
        left = sum(s.close(max(0.0, deadline - time.monotonic())) for s in self.senders)
        self.save()
        self.store.close()
        if self.bus is not None:
            self.bus.flush()
        return left

    def __enter__(self) -> Alerter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- loops
def follow_bus(
    alerter: Alerter,
    bus: Any,
    *,
    group: str = "alerts",
    stop: threading.Event | None = None,
    once: bool = False,
    idle_exit_s: float | None = None,
    on_poll: Callable[[Any], None] | None = None,
) -> None:
    """Consume ``signals`` and ``chain.transfers`` in consumer group ``group`` until ``stop`` is set.

    Offsets are committed after the alerts of a batch are in the outbox and the rule state is saved; a
    restart re-reads at most the batch in flight, and its repeats are dropped (a stream's bars at or before
    its last seen bar, keys already in the outbox). ``once``: stop at the first empty poll. ``on_poll(consumer)``
    runs after every poll (the command reads the consumer's lag and dead letters there for its metrics).
    """
    stop = stop or threading.Event()
    consumer = bus.consumer([Signal.TOPIC, Transfer.TOPIC], group=group)
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_s=1.0)
            if on_poll is not None:
                on_poll(consumer)
            if not batch:
                if once or (idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s):
                    return
                continue
            idle_since = time.monotonic()
            alerter.on_signals([m.event for m in batch if isinstance(m.event, Signal)])
            alerter.on_transfers([m.event for m in batch if isinstance(m.event, Transfer)])
            consumer.commit()
    finally:
        consumer.close()


def follow_lake(
    alerter: Alerter,
    lake: Any,
    *,
    since_ms: int | None = None,
    stop: threading.Event | None = None,
    once: bool = False,
    idle_exit_s: float | None = None,
    poll_s: float | None = None,
) -> None:
    """Tail the lake: each ``poll_s``, the ``signal`` rows after each stream's last seen bar and the
    ``transfer`` rows of blocks from each chain's cursor on, through the rules.

    What counts as new on the first start: streams and chains already in the lake start after their
    newest row (their history only warms the rules up), unless ``since_ms`` is given: then rows from it
    on fire. Streams and chains that appear later are read whole; rows older than
    ``alerter.fire_from_ms`` only warm up. ``once``: one pass, then return.
    """
    stop = stop or threading.Event()
    poll_s = alerter.settings.poll_s if poll_s is None else poll_s
    if not alerter.cursors.get("started"):
        _start_cursors(alerter, lake, since_ms)
    idle_since = time.monotonic()
    while not stop.is_set():
        n = _poll_signals(alerter, lake) + _poll_transfers(alerter, lake)
        if once:
            return
        if n:
            idle_since = time.monotonic()
        elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
            return
        stop.wait(poll_s)


def _signal_rows_to_events(df: Any) -> list[Signal]:
    """Lake rows as signals (v1 rows: no direction, weight or confidence). ``activity`` is left out: no rule
    reads it. A row the schema refuses is logged and skipped, never the end of the loop."""
    out = []
    for r in df.iter_rows(named=True):
        try:
            out.append(
                Signal(
                    model=r["model"],
                    exchange=r["exchange"],
                    symbol=r["symbol"],
                    ts=int(r["ts"]),
                    ret_1h=r["ret_1h"],
                    ret_24h=r["ret_24h"],
                    vol_24h=r["vol_24h"],
                    ret_1h_std=r["ret_1h_std"],
                    ret_24h_std=r["ret_24h_std"],
                    regime=r.get("regime") or "",
                    direction=r.get("direction") or "",
                    weight=r.get("weight"),
                    confidence=r.get("confidence"),
                )
            )
        except SchemaError as e:
            log.warning("ALERT_SKIPPED_ROW kind=signal symbol=%s ts=%s: %s", r.get("symbol"), r.get("ts"), e)
    return out


def _start_cursors(alerter: Alerter, lake: Any, since_ms: int | None) -> None:
    """First start: warm the rules up on each stream's recent history and set the chains' cursors."""
    import polars as pl

    window = alerter.settings.thresholds.vol_window
    lf = lake.scan("signal")
    if lf.collect_schema().names():
        keys = ["model", "exchange", "symbol"]
        cut = pl.lit(since_ms, pl.Int64) if since_ms is not None else pl.col("ts").max().over(keys) + 1
        warm = (
            lf.filter(pl.col("ts") < cut)
            .sort("ts")
            .group_by(keys, maintain_order=True)
            .tail(window)
            .sort("ts")
            .collect()
        )
        alerter.on_signals(_signal_rows_to_events(warm), fire=False)
        if since_ms is not None:  # streams with nothing before since_ms: start them from it too
            for row in lf.select(keys).unique().collect().iter_rows():
                k = ":".join(row)
                if k not in alerter.streams:
                    alerter.streams[k] = StreamState(last_ts=since_ms - 1)
    chains: dict[str, dict[str, int]] = {}
    lf = lake.scan("transfer")
    if lf.collect_schema().names():
        if since_ms is None:  # after the newest block: nothing there fires
            q = lf.group_by("chain").agg((pl.col("block_number").max() + 1).alias("block"), pl.col("ts").max())
        else:  # from the first block at or after since_ms
            q = (
                lf.filter(pl.col("ts") >= since_ms)
                .group_by("chain")
                .agg(pl.col("block_number").min().alias("block"), pl.col("ts").min())
            )
        chains = {c: {"block": int(b), "ts": int(t), "rows": 0} for c, b, t in q.collect().iter_rows()}
    alerter.cursors = {"started": True, "chains": chains}
    alerter.save()


def _poll_signals(alerter: Alerter, lake: Any) -> int:
    import polars as pl

    lasts = [s.last_ts for s in alerter.streams.values()]
    # only files and row groups after the oldest stream's last bar are read (the year partitions and the
    # Parquet statistics prune the rest); a stream that appears later is read from there on
    start = _utc(min(lasts)) if lasts and min(lasts) > 0 else None
    lf = lake.scan("signal", start=start)
    if not lf.collect_schema().names():
        return 0
    known = pl.DataFrame(
        {"__stream": list(alerter.streams), "__last": lasts}, schema={"__stream": pl.String, "__last": pl.Int64}
    ).lazy()
    stream = pl.concat_str([pl.col("model"), pl.col("exchange"), pl.col("symbol")], separator=":")
    new = (
        lf.with_columns(stream.alias("__stream"))
        .join(known, on="__stream", how="left")
        .filter(pl.col("__last").is_null() | (pl.col("ts") > pl.col("__last")))
        .drop("__stream", "__last")
        .sort("ts")
        .collect()
    )
    if new.is_empty():
        return 0
    alerter.on_signals(_signal_rows_to_events(new))
    return new.height


def _poll_transfers(alerter: Alerter, lake: Any) -> int:
    """New transfer rows through the transfer rules; returns how many rows were not seen before.

    Each chain is read from its cursor block on (its month partitions and the Parquet statistics prune the
    rest); the cursor block itself is read again, as its rows may have come in two appends (the alert keys
    drop the repeats). A chain that appears later is read whole.
    """
    import polars as pl

    chains: dict[str, dict[str, int]] = alerter.cursors.setdefault("chains", {})
    oldest = min((c["ts"] for c in chains.values()), default=None)
    recent = lake.scan("transfer", start=None if oldest is None else _utc(oldest))
    if not recent.collect_schema().names():
        return 0
    present = recent.select(pl.col("chain").unique()).collect()["chain"].to_list()
    parts, seen = [], 0
    for chain in present:
        cur = chains.get(chain)
        if cur is None:
            parts.append(lake.scan("transfer", chain=chain).collect())
            continue
        part = (
            lake.scan("transfer", start=_utc(cur["ts"]), chain=chain)
            .filter(pl.col("block_number") >= cur["block"])
            .collect()
        )
        seen += min(cur["rows"], part.filter(pl.col("block_number") == cur["block"]).height)
        parts.append(part)
    new = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    if new.height == seen:
        return 0
    alerter.on_transfer_frame(new)
    last = (
        new.sort("block_number")
        .group_by("chain", maintain_order=True)
        .agg(pl.col("block_number").last(), pl.col("ts").last())
    )
    for chain, block, ts in last.iter_rows():
        rows = new.filter((pl.col("chain") == chain) & (pl.col("block_number") == block)).height
        chains[chain] = {"block": int(block), "ts": int(ts), "rows": rows}
    alerter.save()
    return new.height - seen


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
