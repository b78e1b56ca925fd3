"""Where alerts and their deliveries are kept, so that a restarted alerter neither repeats nor loses one.

- **The outbox** is the lake's ``alert`` table (:class:`continuum.schema.Alert`, deduplicated on ``key``;
  the dashboard reads it). An alert is written there, atomically, before anything posts it; a key already
  there never fires again.
- **The journal**, ``<state_dir>/delivered.jsonl``: one line per (key, webhook, outcome): ``queued`` when
  the alert fires (before it enters the outbox), then ``delivered`` or ``rejected`` once the webhook has
  answered, or ``expired`` when it grew older than ``[alerts].max_age_h`` first. Lines are fsync'd before
  anything is posted; a torn last line (the process died while writing it) is ignored. Pending, for a
  webhook, means queued for it and in the outbox, with no outcome yet; a webhook added to the config later
  receives the alerts that fire from then on, not the backlog.
- **The rule state**, ``<state_dir>/state.json``: each stream's :class:`alerts.rules.StreamState` and the
  lake-tail cursors, replaced atomically after the alerts they produced are in the outbox.
- **A lock**, ``<state_dir>/lock``: one alerter per state directory (a second one exits with a clear line).

The guarantee that follows: every alert is posted to every webhook **at least once**; it is posted twice
only when the process dies between a webhook's 2xx and the journal's fsync (milliseconds), and the key in
every payload (and the ``Idempotency-Key`` header) lets a receiver drop that repeat.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from continuum.atomic import replace_atomically
from continuum.errors import UserError
from continuum.schema import Alert

JOURNAL, STATE, LOCK = "delivered.jsonl", "state.json", "lock"


class AlertStore:
    """The outbox, the journal and the rule state of one alerter. ``lake=None`` and ``state_dir=None``
    keep everything in memory (``--dry-run``, tests)."""

    def __init__(self, lake: Any | None, state_dir: str | Path | None, *, keep_since_ms: int = 0):
        self.lake = lake
        self.dir = Path(state_dir) if state_dir is not None else None
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        self._keys: set[str] = set()  # every key in the outbox
        self._recent: dict[str, Alert] = {}  # alerts fired since keep_since_ms, by key (what may be pending)
        self._outcomes: dict[tuple[str, str], str] = {}  # (key, webhook id) -> outcome
        self._load_outbox(keep_since_ms)
        self._load_journal()

    # ------------------------------------------------------------------ outbox
    def seen(self, key: str) -> bool:
        return key in self._keys

    def record(self, alerts: list[Alert], hooks: Sequence[str] = ()) -> list[Alert]:
        """Queue the alerts whose key is new for ``hooks`` (journal) and put them in the outbox (one atomic
        lake append); returns those. Journal first: a key queued but not in the outbox (the process died
        between the two) fires again from the same input and finds its journal lines."""
        with self._lock:
            new = [a for a in dict((a.key, a) for a in alerts).values() if a.key not in self._keys]
            if not new:
                return []
            self._write([(a.key, h, "queued") for a in new for h in hooks])
            if self.lake is not None:
                self.lake.append_events(new)
            for a in new:
                self._keys.add(a.key)
                self._recent[a.key] = a
            return new

    def pending(self, hook: str, since_ms: int) -> list[Alert]:
        """Alerts fired at or after ``since_ms``, queued for webhook ``hook`` and not answered, oldest first."""
        with self._lock:
            for k in [k for k, a in self._recent.items() if a.ts < since_ms]:
                del self._recent[k]
            out = [a for a in self._recent.values() if self._outcomes.get((a.key, hook)) == "queued"]
        return sorted(out, key=lambda a: (a.ts, a.event_ts, a.key))

    def _load_outbox(self, since_ms: int) -> None:
        if self.lake is None:
            return
        import polars as pl

        lf = self.lake.scan("alert")
        if not lf.collect_schema().names():
            return
        df = lf.collect()
        self._keys = set(df["key"].to_list())
        for row in df.filter(pl.col("ts") >= since_ms).iter_rows(named=True):
            row["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
            self._recent[row["key"]] = Alert(**{k: row[k] for k in Alert.__dataclass_fields__ if k in row})

    # ------------------------------------------------------------------ journal
    def mark(self, key: str, hook: str, outcome: str) -> None:
        """Record a webhook's outcome for ``key``; durable (fsync'd) when this returns."""
        with self._lock:
            self._write([(key, hook, outcome)])

    def _write(self, rows: list[tuple[str, str, str]]) -> None:
        for key, hook, outcome in rows:
            self._outcomes[(key, hook)] = outcome
        if self.dir is not None and rows:
            text = "".join(_line(*r) for r in rows)
            with open(self.dir / JOURNAL, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

    def outcome(self, key: str, hook: str) -> str | None:
        return self._outcomes.get((key, hook))

    def _load_journal(self) -> None:
        if self.dir is None or not (self.dir / JOURNAL).exists():
            return
        lines = (self.dir / JOURNAL).read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines:
            try:
                d = json.loads(line)
                self._outcomes[(d["key"], d["hook"])] = d["outcome"]
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash while it was written
        # compact: outcomes for alerts that can no longer be pending are not needed
        keep = {kh: o for kh, o in self._outcomes.items() if kh[0] in self._recent}
        if len(lines) > 2 * len(keep) + 10_000:
            self._outcomes = keep
            text = "".join(_line(k, h, o) for (k, h), o in keep.items())
            _atomic_write(self.dir / JOURNAL, text)

    # ------------------------------------------------------------------ rule state
    def load_state(self) -> dict[str, Any] | None:
        if self.dir is None or not (self.dir / STATE).exists():
            return None
        try:
            return json.loads((self.dir / STATE).read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{self.dir / STATE}: not valid JSON ({e}); delete it to start the rules afresh") from None

    def save_state(self, state: dict[str, Any]) -> None:
        if self.dir is not None:
            _atomic_write(self.dir / STATE, json.dumps(state, separators=(",", ":")))

    # ------------------------------------------------------------------ lock
    def _take_lock(self) -> None:
        import fcntl

        assert self.dir is not None
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(
                f"{self.dir} is in use by another alerter (pid {holder}); one alerter per [alerts].state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _line(key: str, hook: str, outcome: str) -> str:
    return json.dumps({"key": key, "hook": hook, "outcome": outcome}, separators=(",", ":")) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    with replace_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
