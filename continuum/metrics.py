"""Prometheus metrics of the long-running commands: ``learn``, ``stream market``, ``stream chain``, ``live``,
``alerts --follow``, ``scheduler`` and ``dashboard``.

Each process has one :class:`Metrics` on its own registry (not prometheus-client's global one, so two in one
process never collide), served as Prometheus text over HTTP by :meth:`Metrics.serve` when the command is given
``--metrics-port PORT`` (off by default; docs/service.md suggests 9464). Counters only go up: rates (events/s,
bars/s) are Prometheus's ``rate()``; latency quantiles come from the histogram
(``histogram_quantile(0.99, rate(continuum_predict_seconds_bucket[5m]))``).

| metric | type | labels | what |
|---|---|---|---|
| ``continuum_events_total`` | counter | topic, direction (in, out) | events consumed from / published to the bus |
| ``continuum_deadletters_total`` | counter | | undecodable messages sent to ``deadletter`` |
| ``continuum_reconnects_total`` | counter | source | websocket / RPC reconnects of a source |
| ``continuum_consumer_lag`` | gauge | topic, partition | messages behind the partition's end |
| ``continuum_bars_total`` | counter | | bars the learner processed |
| ``continuum_predict_seconds`` | histogram | | one bar in the learner: features, predict, learn, publish |
| ``continuum_signal_delay_seconds`` | histogram | | a bar's last candle consumed -> its signals published |
| ``continuum_checkpoint_age_seconds`` | gauge | | seconds since the last checkpoint (NaN before the first) |
| ``continuum_alerts_total`` | counter | rule, severity | alerts fired (``alerts --follow``) |
| ``continuum_webhook_posts_total`` | counter | hook, outcome (delivered, failed) | posts; hook: the URL's hash |
| ``continuum_alert_backlog`` | gauge | | alerts queued or in flight to the webhooks |
| ``continuum_job_runs_total`` | counter | job, outcome (ok, error, missed) | scheduler job runs |
| ``continuum_job_seconds`` | histogram | job | a scheduler job's run time |
| ``continuum_job_last_success_timestamp_seconds`` | gauge | job | when the job last finished without error |
| ``continuum_job_next_run_timestamp_seconds`` | gauge | job | when the job runs next |
| ``continuum_dashboard_up`` | gauge | | 1 when the Streamlit server answers its health check |
| ``continuum_signal_age_seconds`` | gauge | | now - the newest signal's bar time in the lake |

Counters kept by a library object (a source's reconnects, a consumer's dead letters, an alerter's alerts) are read
when scraped (:meth:`Metrics.counter_from`), so the parts need no metrics code; so are gauges whose value a part
knows (:meth:`Metrics.gauge_from`: an alert backlog, a health check). The learner counts with :meth:`Metrics.count`.

Example::

    m = Metrics()
    m.serve(9464)            # http://127.0.0.1:9464/metrics
    m.count("continuum_events", 500, topic="market.candles", direction="in")
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# seconds: 0.5 ms .. 10 s, dense where an hourly learner lives (a few ms to a few hundred ms a bar)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 10)


# the counters: name (without _total) -> (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "continuum_events": ("events consumed from (in) or published to (out) the bus", ("topic", "direction")),
    "continuum_deadletters": ("undecodable messages sent to deadletter", ()),
    "continuum_reconnects": ("websocket / RPC reconnects of a source", ("source",)),
    "continuum_bars": ("bars processed by the learner", ()),
    "continuum_alerts": ("alerts fired", ("rule", "severity")),
    "continuum_webhook_posts": (
        "webhook posts by outcome (hook: first 12 hex digits of the URL's SHA-256)",
        ("hook", "outcome"),
    ),
    "continuum_job_runs": ("scheduler job runs by outcome (ok, error, missed)", ("job", "outcome")),
}

# the gauges read when scraped: name -> (help, label names)
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "continuum_alert_backlog": ("alerts queued or in flight to the webhooks", ()),
    "continuum_job_last_success_timestamp_seconds": ("when the job last finished without error (unix s)", ("job",)),
    "continuum_job_next_run_timestamp_seconds": ("when the job runs next (unix s)", ("job",)),
    "continuum_dashboard_up": ("1 when the dashboard's Streamlit server answers its health check, else 0", ()),
    "continuum_signal_age_seconds": ("now - the newest signal's bar time in the lake (s)", ()),
}

# seconds: a scheduler job takes from milliseconds (retention) to an hour (nightly reports)
JOB_BUCKETS = (0.01, 0.1, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200)


class _Counters:
    """The counters: each series is a running total kept here (:meth:`Metrics.count`) plus any totals read
    from library objects when scraped (:meth:`Metrics.counter_from`)."""

    family = CounterMetricFamily
    names = COUNTERS

    def __init__(self) -> None:
        self.totals: dict[tuple[str, tuple[str, ...]], float] = {}
        self.reads: dict[tuple[str, tuple[str, ...]], list[Callable[[], float]]] = {}
        self.lock = threading.Lock()

    def collect(self):
        with self.lock:
            series = set(self.totals) | set(self.reads)
            values = {k: self.totals.get(k, 0.0) + sum(_read(r) for r in self.reads.get(k, ())) for k in series}
        for name, (doc, labels) in self.names.items():
            fam = self.family(name, doc, labels=list(labels))
            for (n, vals), v in sorted(values.items()):
                if n == name:
                    fam.add_metric(list(vals), v)
            yield fam


class _Gauges(_Counters):
    """The gauges read when scraped (:meth:`Metrics.gauge_from`): each series is the sum of its reads."""

    family = GaugeMetricFamily
    names = GAUGES


def _read(read: Callable[[], float]) -> float:
    """One read of a library object's value; a read that fails is NaN, never a failed scrape."""
    try:
        return float(read())
    except Exception:  # noqa: BLE001 (a scrape must answer even when one source is broken)
        return math.nan


class Metrics:
    """The metric instruments of one process (see the module docstring for names and meanings)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._counters = _Counters()
        r.register(self._counters)
        self._gauges = _Gauges()
        r.register(self._gauges)
        self.lag = Gauge("continuum_consumer_lag", "messages behind the end of the partition", ["topic", "partition"],
                         registry=r)  # fmt: skip
        self.predict = Histogram(
            "continuum_predict_seconds", "one bar in the learner: features, predict, learn, publish",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.signal_delay = Histogram(
            "continuum_signal_delay_seconds", "a bar's last candle consumed -> its signals published",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.job_seconds = Histogram(
            "continuum_job_seconds", "a scheduler job's run time", ["job"], buckets=JOB_BUCKETS, registry=r
        )
        self._last_checkpoint: float | None = None
        self.checkpoint_age = Gauge("continuum_checkpoint_age_seconds", "seconds since the last checkpoint",
                                    registry=r)  # fmt: skip
        self.checkpoint_age.set_function(self._checkpoint_age)
        self._server = None

    # ------------------------------------------------------------------ updates
    def count(self, name: str, n: float = 1, **labels: str) -> None:
        """Add ``n`` to counter ``name`` (one of :data:`COUNTERS`, without ``_total``)."""
        key = (name, self._label_values(name, labels))
        with self._counters.lock:
            self._counters.totals[key] = self._counters.totals.get(key, 0.0) + n

    def counter_from(self, name: str, read: Callable[[], float], **labels: str) -> None:
        """Counter ``name`` also counts ``read()``, a total kept by a library object, read when scraped."""
        key = (name, self._label_values(name, labels))
        with self._counters.lock:
            self._counters.reads.setdefault(key, []).append(read)

    def gauge_from(self, name: str, read: Callable[[], float], **labels: str) -> None:
        """Gauge ``name`` (one of :data:`GAUGES`) reads ``read()`` when scraped (NaN if the read fails)."""
        key = (name, self._label_values(name, labels, GAUGES))
        with self._gauges.lock:
            self._gauges.reads.setdefault(key, []).append(read)

    @staticmethod
    def _label_values(name: str, labels: dict[str, str], table: dict = COUNTERS) -> tuple[str, ...]:
        want = table[name][1]
        if set(labels) != set(want):
            raise ValueError(f"{name} takes labels {want}, got {tuple(labels)}")
        return tuple(str(labels[k]) for k in want)

    def checkpointed(self) -> None:
        self._last_checkpoint = time.monotonic()

    def _checkpoint_age(self) -> float:
        return math.nan if self._last_checkpoint is None else time.monotonic() - self._last_checkpoint

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        for (topic, partition), n in lag.items():
            self.lag.labels(topic, str(partition)).set(n)

    # ------------------------------------------------------------------ serving
    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread (until :meth:`close` or exit)."""
        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def from_port(port: int | None, addr: str = "127.0.0.1") -> Metrics | None:
    """A served :class:`Metrics` for ``--metrics-port`` (None when not given); a busy port is a UserError."""
    from continuum.errors import UserError

    if port is None:
        return None
    if not 0 < port < 65536:
        raise UserError(f"--metrics-port must be 1..65535, got {port}")
    m = Metrics()
    try:
        m.serve(port, addr)
    except OSError as e:
        raise UserError(f"--metrics-port {port}: cannot listen on {addr}:{port} ({e.strerror or e})") from None
    return m
