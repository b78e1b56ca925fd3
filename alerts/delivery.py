"""Webhooks and the POSTs to them: retries with backoff, one sender thread and bounded queue per webhook.

A POST is retried on what may pass (a connection error or timeout, HTTP 408, 429 and 5xx) up to
``[alerts].tries`` times. Waits grow exponentially with full jitter (a uniform draw in
``[0, min(backoff_max_s, backoff_s * 2**n)]``, so many alerters do not retry in step); a ``Retry-After``
header (seconds or an HTTP date; Discord's JSON ``retry_after`` too) is honoured instead, up to
:data:`RETRY_AFTER_MAX_S`. Any other 4xx is a refusal that no retry changes: one error line, never retried.
After the last try the sender writes one error line; the alert stays pending in the outbox, and so do the
alerts queued behind it (they are not tried against a webhook that just failed every try). The sender
offers them again on its next pass, every ``[alerts].redeliver_s`` seconds (and at the next start), until
they are ``[alerts].max_age_h`` old.

Nothing here blocks the stream: :meth:`Sender.offer` never waits (a full queue leaves the alert in the
outbox for the next pass), every POST has a timeout, every wait ends when the sender is stopped.

Webhook URLs are credentials: they appear in logs and errors only through
:func:`continuum.redact.mask_webhook`, and the journal stores a hash of the URL (:attr:`Webhook.id`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import queue
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol

from alerts.payloads import FORMATS, body, format_for
from continuum import __version__
from continuum.redact import mask_webhook, redact
from continuum.schema import Alert

log = logging.getLogger("continuum.alerts")

RETRY_AFTER_MAX_S = 600.0  # a Retry-After longer than this ends the tries (the next pass tries again)
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})  # and any other 5xx
_FORMAT_PREFIX = re.compile(r"^([A-Za-z]+)=(.*)$", re.S)


@dataclass(frozen=True)
class Webhook:
    """One destination. ``url`` is a secret: ``repr`` and :attr:`shown` mask it."""

    url: str = field(repr=False)
    format: str  # slack | discord | json

    @property
    def id(self) -> str:
        """A stable name that is not the secret: the first 12 hex digits of the URL's SHA-256."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    @property
    def shown(self) -> str:
        return mask_webhook(self.url)

    def __repr__(self) -> str:
        return f"Webhook({self.format} {self.shown} id={self.id})"

    def secrets(self) -> list[tuple[str, str]]:
        """(text, masked) pairs to replace in a message: the URL, and its path on its own."""
        path = self.url.split("://", 1)[-1].partition("/")[2]
        shown_path = self.shown.split("://", 1)[-1].partition("/")[2]
        return [(self.url, self.shown)] + ([("/" + path, "/" + shown_path)] if len(path) >= 6 else [])

    def mask(self, text: str) -> str:
        """``text`` with this webhook's URL (and path) masked, and any other URL in it too."""
        for secret, shown in self.secrets():
            text = text.replace(secret, shown)
        return redact(text)


def parse_webhooks(text: str) -> list[Webhook]:
    """``[alerts].webhooks``: URLs separated by commas or white space, each ``URL`` or ``FORMAT=URL``.

    Raises ValueError with the URL masked.
    """
    hooks: list[Webhook] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        fmt, url = None, item
        m = _FORMAT_PREFIX.match(item)
        if m and "://" in m.group(2) and "://" not in m.group(1):
            fmt, url = m.group(1).lower(), m.group(2)
            if fmt not in FORMATS:
                raise ValueError(
                    f"alerts.webhooks: {m.group(1)}= before {mask_webhook(url)} is not a format; "
                    f"known: {', '.join(FORMATS)} (or no prefix: read from the host)"
                )
        if not re.match(r"^https?://[^/\s?#]+", url):
            raise ValueError(f"alerts.webhooks: {mask_webhook(url)} is not an http(s):// URL")
        hooks.append(Webhook(url, fmt or format_for(url)))
    if len({h.id for h in hooks}) != len(hooks):
        raise ValueError("alerts.webhooks: the same URL is listed twice")
    return hooks


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one alert is pushed to one webhook ([alerts] tries, backoff_s, backoff_max_s, timeout_s)."""

    tries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait after ``failures`` failed tries (1, 2, ...): full jitter under a doubling cap."""
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2 ** (failures - 1)))


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | rejected | gave_up | stopped
    tries: int
    error: str = ""
    http: int | None = None  # the last HTTP status, if any


def retry_after(headers: object, payload: bytes, now: float | None = None) -> float | None:
    """Seconds the receiver asks to wait: ``Retry-After`` (seconds or HTTP date), else Discord's JSON
    ``retry_after``; None when neither is there or readable."""
    raw = headers.get("Retry-After") if headers is not None else None  # type: ignore[attr-defined]
    if raw:
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                when = parsedate_to_datetime(raw).timestamp()
            except (TypeError, ValueError, IndexError):
                return None
            return max(0.0, when - (time.time() if now is None else now))
    try:
        v = json.loads(payload or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(v, dict) and isinstance(v.get("retry_after"), (int, float)):
        return max(0.0, float(v["retry_after"]))
    return None


def post(
    hook: Webhook,
    alert: Alert,
    policy: RetryPolicy,
    *,
    halt: threading.Event | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """POST ``alert`` to ``hook`` with retries. Returns how it ended; never raises for network errors.

    ``halt`` ends a wait between tries at once (the sender is stopping): outcome ``stopped``.
    """
    halt = halt or threading.Event()
    rng = rng or random.Random()
    data = body(alert, hook.format)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"continuum-alerts/{__version__}",
        "Idempotency-Key": alert.key,
    }
    error, status = "", None
    for attempt in range(1, policy.tries + 1):
        wait: float | None = None
        req = urllib.request.Request(hook.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=policy.timeout_s) as resp:
                resp.read(65536)
                return Outcome("delivered", attempt, http=resp.status)
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                payload = e.read(65536) if e.fp is not None else b""
            except (OSError, http.client.HTTPException):
                payload = b""
            error = f"HTTP {e.code} {e.reason}"
            if e.code not in _RETRY_STATUS and e.code < 500:
                return Outcome("rejected", attempt, hook.mask(error), status)
            if e.code in (429, 503):
                wait = retry_after(e.headers, payload)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            # refused, reset, DNS, timeout, TLS, a garbled response
            reason = getattr(e, "reason", e)
            error = f"{type(reason).__name__}: {reason}"
            status = None
        if attempt == policy.tries:
            break
        if wait is not None and wait > RETRY_AFTER_MAX_S:
            return Outcome("gave_up", attempt, hook.mask(f"{error}; Retry-After {wait:.0f} s"), status)
        if halt.wait(wait if wait is not None else policy.backoff(attempt, rng)):
            return Outcome("stopped", attempt, hook.mask(error), status)
    return Outcome("gave_up", policy.tries, hook.mask(error), status)


class WebhookRedactor(logging.Filter):
    """A handler filter that replaces each webhook's URL, and its path, with the masked form in every record
    (a library's message that quotes a URL we did not write ourselves)."""

    def __init__(self, hooks: list[Webhook]):
        super().__init__()
        self.pairs = sorted((p for h in hooks for p in h.secrets()), key=lambda p: -len(p[0]))

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = text
        for secret, shown in self.pairs:
            masked = masked.replace(secret, shown)
        if masked != text:
            record.msg, record.args = masked, None
        return True


class Journal(Protocol):
    """What a sender needs of the store (:class:`alerts.store.AlertStore`)."""

    def mark(self, key: str, hook: str, outcome: str) -> None: ...

    def pending(self, hook: str, since_ms: int) -> list[Alert]: ...


class Sender:
    """One webhook's thread: a bounded queue of alerts, POSTed one at a time, outcomes journalled.

    While idle it makes a pass over the outbox every ``redeliver_s`` (and once at start): alerts fired
    within ``max_age_s`` that this webhook has no outcome for, and that are not queued, are queued again:
    those it gave up on, those a full queue turned away, those a previous process left behind.
    """

    def __init__(
        self,
        hook: Webhook,
        policy: RetryPolicy,
        journal: Journal,
        *,
        queue_size: int = 1000,
        redeliver_s: float = 300.0,
        max_age_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.hook, self.policy, self.journal = hook, policy, journal
        self.redeliver_s, self.max_age_s, self.clock = redeliver_s, max_age_s, clock
        self.rng = rng or random.Random()
        self.sent = self.failed = 0
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self._queued: set[str] = set()  # keys queued or in flight
        self._final: dict[str, float] = {}  # key -> when this sender journalled its outcome: never queued again
        self._parked: dict[str, float] = {}  # key -> when it was given up on
        self._down_until = 0.0  # after a give-up, the rest of the queue waits for the next pass untried
        self._lock = threading.Lock()
        self._closing = threading.Event()  # no more passes; leave when the queue is empty
        self._halt = threading.Event()  # leave now
        self._thread = threading.Thread(target=self._run, name=f"alerts-{hook.format}-{hook.id}", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def offer(self, alert: Alert) -> bool:
        """Queue ``alert`` unless it is queued already, has an outcome already, or the queue is full (then it
        waits in the outbox). An outcome counts: the start-up pass may take an alert from the outbox and
        deliver it before the alerter that fired it gets to offer it."""
        with self._lock:
            if alert.key in self._queued or alert.key in self._final:
                return True
            try:
                self._queue.put_nowait(alert)
            except queue.Full:
                return False
            self._queued.add(alert.key)
            return True

    def backlog(self) -> int:
        return len(self._queued)

    def closing(self) -> None:
        """Stop making passes over the outbox; leave once the queue is empty (see :meth:`close`)."""
        self._closing.set()

    def close(self, timeout_s: float) -> int:
        """Deliver what is queued for up to ``timeout_s``, then stop (a wait or a POST in flight ends at
        once or at its timeout). Returns how many alerts were still queued; they stay in the outbox."""
        self._closing.set()
        self._thread.join(timeout_s)
        self._halt.set()
        self._thread.join(self.policy.timeout_s + 1.0)
        return self.backlog()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        next_pass = 0.0
        while not self._halt.is_set():
            if not self._closing.is_set() and time.monotonic() >= next_pass:
                self._pass()
                next_pass = time.monotonic() + self.redeliver_s
            try:
                alert = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                self._deliver(alert)
            except Exception:  # never let one alert end the thread
                log.exception("ALERT_SENDER_ERROR webhook=%s key=%s", self.hook.shown, alert.key)
            finally:
                with self._lock:
                    self._queued.discard(alert.key)

    def _journal(self, key: str, outcome: str) -> None:
        """A final outcome: journalled, and remembered so that no later offer queues the key again."""
        self.journal.mark(key, self.hook.id, outcome)
        with self._lock:
            self._final[key] = self.clock()

    def _pass(self) -> None:
        now = self.clock()
        since_ms = int((now - self.max_age_s) * 1000)
        with self._lock:  # an alert older than max_age is expired if offered again, never posted: forget it
            self._final = {k: t for k, t in self._final.items() if now - t < self.max_age_s}
        again = [
            a
            for a in self.journal.pending(self.hook.id, since_ms)
            if now - self._parked.get(a.key, -1e18) >= self.redeliver_s
        ]
        queued = sum(self.offer(a) for a in again)
        if queued:
            log.info("ALERT_RETRY webhook=%s pending=%d queued=%d", self.hook.shown, len(again), queued)

    def _deliver(self, alert: Alert) -> None:
        if self.clock() * 1000 - alert.ts > self.max_age_s * 1000:
            log.error(
                "ALERT_EXPIRED webhook=%s key=%s age_h=%.1f: older than [alerts].max_age_h, not posted",
                self.hook.shown,
                alert.key,
                (self.clock() * 1000 - alert.ts) / 3.6e6,
            )
            self._journal(alert.key, "expired")
            return
        if time.monotonic() < self._down_until:  # the webhook just failed every try: do not hammer it
            self._parked[alert.key] = self.clock()
            return
        out = post(self.hook, alert, self.policy, halt=self._halt, rng=self.rng)
        if out.status == "delivered":
            self.sent += 1
            self._parked.pop(alert.key, None)
            self._journal(alert.key, "delivered")
            log.info("ALERT_SENT webhook=%s key=%s tries=%d", self.hook.shown, alert.key, out.tries)
        elif out.status == "rejected":
            self.failed += 1
            self._journal(alert.key, "rejected")
            log.error(
                'ALERT_REJECTED webhook=%s key=%s tries=%d error="%s": not retried (fix the webhook or payload)',
                self.hook.shown,
                alert.key,
                out.tries,
                out.error,
            )
        elif out.status == "gave_up":
            self.failed += 1
            self._parked[alert.key] = self.clock()
            self._down_until = time.monotonic() + self.redeliver_s
            log.error(
                'ALERT_UNDELIVERED webhook=%s key=%s tries=%d error="%s": stays pending with %d more queued; '
                "next pass in %.0f s",
                self.hook.shown,
                alert.key,
                out.tries,
                out.error,
                self._queue.qsize(),
                self.redeliver_s,
            )
