"""``continuum learn``: the live learner. A consumer group on ``market.candles`` -> Hope -> ``signals``.

What it does, bar by bar (docs/service.md has the long form):

- keeps, per symbol, a rolling window of closed bars on the timeframe grid (``--window`` bars,
  default 24*200). Candles are keyed by open time: a duplicate replaces a bar that is not processed
  yet (last write wins) and is ignored for a processed one; a late candle for a processed bar is kept in
  the window's empty slot but changes nothing already computed (its bar stays masked, and the running
  feature state has moved on); a bar that never comes stays a gap (NaN, masked), never forward-filled;
- bar t is processed when every tracked symbol has delivered bar t or a later bar (per-key order on
  the bus means a later bar proves bar t is a gap), or when ``--wait`` seconds have passed since the
  first candle of bar t arrived (then the missing symbols are masked for bar t);
- features for bar t come from a running state that adds one bar at a time
  (``learner.live_features.IncrementalFeatures``: the features of ``learner.features`` over every bar so
  far, at a cost that does not grow with the history), Hope predicts bar t, and the targets realised by
  bar t's close are released to ``learn`` exactly as ``learner.stream.run_stream`` releases them
  (``realised_window`` over ``HORIZON_TUPLE``);
- one :class:`~continuum.schema.Signal` per symbol present at bar t goes to the bus (``signals``)
  and, buffered, to the lake (deduplicated on the natural key model, exchange, symbol, ts); with a
  position rule (``positions``, injected by the command layer: ``strategies.positions.feed_rule``) each
  carries the rule's target weight and its direction, the rule's book being part of the state;
- every ``checkpoint_every`` bars (and on a clean stop): flush the bus, write the buffered signals to
  the lake, ``save_state`` the whole model with position = next offset per partition, bar index, grid
  origin, the feature state and the candles of the last day and of the bars not processed yet (the
  whole window only before the first bar), prune to the newest ``keep_checkpoints``, and only then commit the
  offsets to the group.

Restart: the newest checkpoint of this group is restored and every assigned partition is *seeked to
the checkpointed offset*, whatever the group committed. Commits happen only after a checkpoint, so the
committed offset is normally equal to the checkpointed one or (a crash between checkpoint and commit)
behind it; if it is ahead (the checkpoint directory was replaced by an older copy) the checkpoint's
offsets are still the only ones consistent with the restored state. Without a checkpoint the state is
fresh and the group's committed offsets (the beginning for a new group) are used.

Signals and crashes: bars up to the checkpointed bar are never published again. Bars processed after
the last checkpoint and before a crash are processed again after the restart from the same state and
the same candles, so they are re-published *identical* (same natural key, same bytes). The lake keeps
one row per natural key; consumers of the ``signals`` topic deduplicate on the natural key (at most
``checkpoint_every`` bars can repeat, only after a crash). tests/learner/test_service.py checks both.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from continuum.schema import Candle
from continuum.timeframes import timeframe_ms

if TYPE_CHECKING:
    from continuum.metrics import Metrics
    from learner.live_features import IncrementalFeatures
    from learner.signals import PositionRule

DEFAULT_WINDOW = 24 * 200
CANDLES = Candle.TOPIC
CKPT_RE = re.compile(r"^learn-(?P<group>.+)-(?P<bar>\d{9})\.pt$")
POSITION_FORMAT = "continuum.learn/1"


def _to_tensors(d: dict) -> dict:
    import numpy as np
    import torch

    return {k: _to_tensors(v) if isinstance(v, dict) else torch.from_numpy(np.ascontiguousarray(v))
            if isinstance(v, np.ndarray) else v for k, v in d.items()}  # fmt: skip


def _to_numpy(d: dict) -> dict:
    return {k: _to_numpy(v) if isinstance(v, dict) else v.numpy() if hasattr(v, "numpy") else v for k, v in d.items()}


def checkpoints_of(ckpt_dir: str | Path, group: str) -> list[Path]:
    """A group's checkpoints in ``ckpt_dir``, oldest first (by bar index)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = CKPT_RE.match(p.name)
        if m and m["group"] == group:
            found.append((int(m["bar"]), p))
    return [p for _, p in sorted(found)]


def checkpoint_resume_ms(ckpt_dir: str | Path, group: str) -> int | None:
    """Open time of the next bar after a group's newest checkpoint (None without one), without a model:
    where a source restarts when the bus does not keep the checkpoint's offsets."""
    from learner.checkpoint import safe_load

    ckpts = checkpoints_of(ckpt_dir, group)
    if not ckpts:
        return None
    pos = safe_load(ckpts[-1])["position"]
    return None if pos["t0"] < 0 else int(pos["t0"]) + int(pos["bar"]) * timeframe_ms(pos["timeframe"])


def _say(msg: str) -> None:
    print(f"continuum learn: {msg}", file=sys.stderr, flush=True)


class LearnerService:
    """The live loop. ``bus`` is any :class:`continuum.bus.Bus`; ``model`` a :class:`learner.hope.online.Hope`
    (``reset`` is called here unless a checkpoint is restored)."""

    def __init__(
        self,
        bus,
        model,
        symbols: list[str],
        exchange: str,
        timeframe: str = "1h",
        group: str = "learner",
        checkpoint_dir: str | Path = ".continuum/checkpoints",
        checkpoint_every: int = 24,
        keep_checkpoints: int = 5,
        window: int = DEFAULT_WINDOW,
        wait_s: float = 120.0,
        lake=None,
        model_name: str = "hope",
        verbose: bool = False,
        onchain=None,
        positions: PositionRule | None = None,
        metrics: Metrics | None = None,
        resume_offsets: bool = True,
    ):
        from learner.features import MAX_HORIZON

        if window < MAX_HORIZON + 2:
            raise ValueError(f"window must hold at least {MAX_HORIZON + 2} bars")
        self.bus, self.model, self.symbols, self.exchange = bus, model, list(symbols), exchange
        self.timeframe, self.step_ms, self.group = timeframe, timeframe_ms(timeframe, "--timeframe"), group
        self.ckpt_dir, self.every, self.keep = Path(checkpoint_dir), checkpoint_every, keep_checkpoints
        self.window, self.wait_s, self.lake, self.model_name, self.verbose = window, wait_s, lake, model_name, verbose
        self.onchain = onchain  # an OnchainSource (learner.features): the same columns for every asset
        self.positions = positions  # target weights for the signals (learner.signals.PositionRule), or None
        self.book = None if positions is None else positions.init(len(self.symbols))
        self.metrics = metrics  # continuum.metrics.Metrics: bars, latency, lag, checkpoint age (or None)
        # False: the bus is not the one the checkpoint's offsets refer to (the embedded bus of a new process);
        # the source then publishes again from resume_ms() and the consumer starts at the bus's beginning
        self.resume_offsets = resume_offsets
        self._sym_index = {s: i for i, s in enumerate(self.symbols)}
        # state (all of it goes into the checkpoint position)
        self.bars: dict[str, dict[int, tuple[float, float, float, float, float]]] = {s: {} for s in self.symbols}
        self.first_seen: dict[str, int] = {}
        self._newest: dict[str, int] = {}  # per symbol, the open time of its newest candle
        self.t0: int | None = None  # open time of bar index 0 (the model's clock 0)
        self.next_bar = 0  # index of the next bar to process
        self.offsets: dict[tuple[str, int], int] = {}  # next offset per partition reflected in the state
        self.restored_from: Path | None = None
        self._restored: bool | None = None  # None: restore() not called yet
        # process-local bookkeeping
        self._arrived: dict[int, float] = {}  # bar open time -> wall time its first candle arrived
        self._completed: dict[int, float] = {}  # bar open time -> wall time its latest candle arrived
        self._lake_buffer: list = []
        self._inc: IncrementalFeatures | None = None  # the features' running state (learner.live_features)
        self._inc_base = 0  # absolute bar index of the state's first bar
        self._processed_here = 0
        self._published = 0
        self._stop = False
        self._dirty = False
        self.consumer = None
        self.skipped = 0

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        """This group's checkpoints, oldest first (by bar index)."""
        return checkpoints_of(self.ckpt_dir, self.group)

    def restore(self) -> bool:
        """Load the newest checkpoint of this group; False (and a fresh model state) if there is none."""
        import torch

        from continuum.errors import UserError
        from learner.checkpoint import load_state

        ckpts = self.checkpoints()
        self._restored = bool(ckpts)
        if not ckpts:
            self.model.reset(len(self.symbols))
            return False
        path = ckpts[-1]
        pos = load_state(path, self.model)
        if pos.get("format") != POSITION_FORMAT:
            raise UserError(f"{path} is not a `continuum learn` checkpoint")
        for key, want in (("symbols", self.symbols), ("exchange", self.exchange), ("timeframe", self.timeframe)):
            if pos[key] != want:
                raise UserError(
                    f"checkpoint {path} was written for {key}={pos[key]!r}, not {want!r}: "
                    f"use another --group or --checkpoint-dir"
                )
        self.t0 = None if pos["t0"] < 0 else int(pos["t0"])
        self.next_bar = int(pos["bar"])
        self.offsets = {}
        for k, v in pos["offsets"].items() if self.resume_offsets else ():
            topic, _, part = k.rpartition(":")
            self.offsets[(topic, int(part))] = int(v)
        self.first_seen = {s: int(v) for s, v in pos["first_seen"].items()}
        if self.positions is not None:  # a checkpoint written without a rule: the book starts flat here
            saved = pos.get("book")
            self.book = (
                self.positions.init(len(self.symbols))
                if saved is None
                else self.positions.load({k: v.numpy() for k, v in saved.items()})
            )
        for s in self.symbols:
            w = pos["windows"][s]
            ts = w["ts"].tolist()
            vals = w["ohlcv"].to(torch.float64).tolist()
            self.bars[s] = {int(t): tuple(v) for t, v in zip(ts, vals, strict=True)}
            if self.bars[s]:
                self._newest[s] = max(self.bars[s])
        now = time.monotonic()  # pending bars restart their wait clock now
        self._arrived = {t: now for s in self.symbols for t in self.bars[s] if t >= self._next_ts()}
        self.restored_from = path
        self._inc = None
        saved = pos.get("features")  # absent in checkpoints of older versions: rebuilt from the windows
        if saved is not None:
            from learner.live_features import IncrementalFeatures

            self._inc = IncrementalFeatures(self.symbols, self.timeframe, self.onchain)
            self._inc.load(_to_numpy(saved["state"]))
            self._inc_base = int(saved["base"])
        return True

    def resume_ms(self) -> int | None:
        """Open time of the next bar to process (after :meth:`restore`); None before the grid has started.

        A source feeding a bus that does not keep the checkpointed offsets (``resume_offsets=False``)
        publishes again from here: candles of processed bars are ignored, later ones are the same bars.
        """
        return None if self.t0 is None else self._next_ts()

    def checkpoint(self) -> Path:
        """Flush signals (bus, lake), write the whole state atomically, prune, then commit the offsets."""
        import numpy as np
        import torch

        from learner.checkpoint import save_state
        from learner.features import MAX_HORIZON

        self.bus.flush()
        self._flush_lake()
        windows = {}
        # with the feature state saved, the processed bars are not needed to resume: keep the last day's
        # (and every bar not processed yet); the whole window costs a full window's copy at every checkpoint
        keep = -1 if self._inc is None or self.t0 is None else self._next_ts() - MAX_HORIZON * self.step_ms
        for s in self.symbols:
            items = sorted(kv for kv in self.bars[s].items() if kv[0] >= keep)
            windows[s] = {  # through numpy: torch.tensor over nested lists took most of a checkpoint's time
                "ts": torch.from_numpy(np.array([t for t, _ in items], dtype=np.int64)),
                "ohlcv": torch.from_numpy(np.array([v for _, v in items], dtype=np.float64).reshape(-1, 5)),
            }
        position = {
            "format": POSITION_FORMAT,
            "group": self.group,
            "exchange": self.exchange,
            "timeframe": self.timeframe,
            "symbols": list(self.symbols),
            "t0": -1 if self.t0 is None else int(self.t0),
            "bar": int(self.next_bar),
            "offsets": {f"{t}:{p}": int(o) for (t, p), o in sorted(self.offsets.items())},
            "first_seen": dict(self.first_seen),
            "windows": windows,
        }
        if self.book is not None:
            position["book"] = {k: torch.from_numpy(v) for k, v in self.book.as_dict().items()}
        if self._inc is not None:
            position["features"] = {"base": int(self._inc_base), "state": _to_tensors(self._inc.state())}
        path = self.ckpt_dir / f"learn-{self.group}-{self.next_bar:09d}.pt"
        save_state(path, self.model, position)
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        if self.consumer is not None and self.offsets:
            self.consumer.commit(dict(self.offsets))  # only now: the state that covers them is durable
        self._dirty = False
        if self.metrics is not None:
            self.metrics.checkpointed()
        _say(f"checkpoint bar={self.next_bar} offsets={position['offsets']} -> {path.name}")
        return path

    def _flush_lake(self) -> None:
        if self.lake is not None and self._lake_buffer:
            self.lake.append_events(self._lake_buffer)
        self._lake_buffer = []

    # ------------------------------------------------------------------ consuming
    def _on_assign(self, parts: list[tuple[str, int]]) -> None:
        if self.restored_from is None or not self.resume_offsets:
            return  # fresh state: the group's committed offsets (or the beginning) are right
        seek = {tp: self.offsets.get(tp, 0) for tp in parts}
        if self.consumer is None:  # an embedded consumer assigns inside its constructor
            self._pending_seek.update(seek)
        else:
            self.consumer.seek(seek)
        _say(f"seeking {len(seek)} partitions to the offsets of {self.restored_from.name} (not the group's commits)")

    def _on_revoke(self, parts: list[tuple[str, int]]) -> None:
        if self._dirty:
            self.checkpoint()

    def ingest(self, msg) -> None:
        """Fold one consumed message into the windows; record its offset."""
        self.offsets[(msg.topic, msg.partition)] = msg.offset + 1
        self._dirty = True
        c = msg.event
        if (
            not isinstance(c, Candle)
            or c.exchange != self.exchange
            or c.timeframe != self.timeframe
            or c.symbol not in self._sym_index
            or not c.closed
        ):
            self.skipped += 1
            return
        if c.ts % self.step_ms:
            self.skipped += 1
            _say(f"candle {c.symbol} ts={c.ts} is not on the {self.timeframe} grid; skipped")
            return
        self.first_seen.setdefault(c.symbol, c.ts)
        bars = self.bars[c.symbol]
        value = (c.open, c.high, c.low, c.close, c.volume)
        if self.t0 is not None:
            idx = (c.ts - self.t0) // self.step_ms
            if idx < self.next_bar - self.window + 1:
                return  # older than anything the window keeps
            if idx < self.next_bar:
                bars.setdefault(c.ts, value)  # late: kept in the window (a processed bar stays as it was)
                return
        bars[c.ts] = value  # not processed yet: last write wins
        if c.ts > self._newest.get(c.symbol, -1):
            self._newest[c.symbol] = c.ts
        now = time.monotonic()
        self._arrived.setdefault(c.ts, now)
        self._completed[c.ts] = now

    def _bar_ready(self, ts: int, now: float) -> bool:
        resolved = all(ts in self.bars[s] or self._latest(s) > ts for s in self.symbols)
        if resolved:
            return True
        arrived = self._arrived.get(ts)
        if arrived is None:  # nobody has bar ts yet; a later bar from anyone also starts the clock
            later = [a for t, a in self._arrived.items() if t > ts]
            if not later:
                return False
            arrived = self._arrived[ts] = min(later)
        return now - arrived >= self.wait_s

    def _next_ts(self) -> int:
        return -1 if self.t0 is None else self.t0 + self.next_bar * self.step_ms

    def _latest(self, s: str) -> int:
        """Open time of the symbol's newest candle (-1 if none): kept up to date by ingest, not searched for."""
        return self._newest.get(s, -1)

    def _start_grid(self, now: float) -> bool:
        if self.t0 is not None:
            return True
        if not self.first_seen:
            return False
        if len(self.first_seen) < len(self.symbols):
            first = min(self._arrived.values(), default=now)
            if now - first < self.wait_s:
                return False
            missing = sorted(set(self.symbols) - set(self.first_seen))
            _say(f"no candle from {', '.join(missing)} after {self.wait_s:.0f}s: starting without them (masked)")
        self.t0 = min(self.first_seen.values())
        return True

    def process_ready(self, max_bars: int | None = None) -> int:
        """Process every bar that is ready; returns how many."""
        now = time.monotonic()
        n = 0
        if not self._start_grid(now):
            return 0
        while not self._stop and (max_bars is None or self._processed_here < max_bars):
            ts = self.t0 + self.next_bar * self.step_ms
            if not self._bar_ready(ts, now):
                break
            self.process_bar()
            n += 1
            self._processed_here += 1
            if self.next_bar % self.every == 0:
                self.checkpoint()
        return n

    def _features_at(self, k: int) -> IncrementalFeatures:
        """The features' running state, ready to add bar ``k``. Kept bar by bar and checkpointed; without
        it (a checkpoint of an older version) it is rebuilt from the window's bars, which starts its EWMAs
        at the window's first bar instead of the first bar ever (a small, bounded difference)."""
        from learner.live_features import IncrementalFeatures

        inc = self._inc
        if inc is None or self._inc_base + inc.k != k - 1:
            lo = max(0, k - self.window + 1)
            inc = self._inc = IncrementalFeatures(self.symbols, self.timeframe, self.onchain)
            self._inc_base = lo
            for j in range(lo, k):
                ts = self.t0 + j * self.step_ms
                inc.step(ts, self._column(ts))
        return inc

    def _column(self, ts: int):
        import numpy as np

        col = np.full((5, len(self.symbols)), np.nan)
        for j, s in enumerate(self.symbols):
            v = self.bars[s].get(ts)
            if v is not None:
                col[:, j] = v
        return col

    def process_bar(self) -> list:
        """Features for bar ``next_bar``, predict, release realised targets, publish the signals."""
        import numpy as np

        from learner.features import MAX_HORIZON
        from learner.protocol import to_raw
        from learner.signals import make_signal
        from learner.stream import run_stream

        began = time.perf_counter()
        k = self.next_bar
        inc = self._features_at(k)
        inc.step(self.t0 + k * self.step_ms, self._column(self.t0 + k * self.step_ms))
        fp, mark = inc.tail(MAX_HORIZON + 1)  # bars k-24..k: all that can release a target now
        s = len(fp.times) - 1  # local index of bar k
        # the one streaming loop, for one bar: predict bar k, then learn what its close realised; clock0 puts
        # tail bar j at the model's absolute bar k - s + j (clock 0 = the grid's first bar)
        res = run_stream(self.model, fp, start=s, end=s + 1, chunk=1, clock0=-(k - s), record_activity=True)
        pred = res.preds[s]  # (B, 3)
        act = {name: v[s] for name, v in res.activity.items()}
        ts = int(fp.times[s])
        weights = [None] * len(self.symbols)
        if self.positions is not None:  # the book steps every bar (it drifts even when no forecast is usable)
            # rows before s carry their last present close, so a return across a gap is booked as in a replay
            held = dataclasses.replace(fp, close=np.where(np.arange(s + 1)[:, None] < s, mark, fp.close))
            w, self.book = self.positions.step_panel(self.book, held, s, to_raw(pred, fp.sigma[s]))
            weights = [float(v) for v in w]
        out = []
        for b, sym in enumerate(self.symbols):
            if fp.mask[s, b] and np.isfinite(pred[b]).all():
                a = {name: float(v[b]) for name, v in act.items() if np.ndim(v) == 1 and math.isfinite(float(v[b]))}
                sig = make_signal(
                    self.model_name, self.exchange, sym, ts, pred[b], float(fp.sigma[s, b]), a, weights[b]
                )
                out.append(sig)
        for sig in out:
            self.bus.publish(sig)
        if self.metrics is not None:
            m = self.metrics
            m.count("continuum_bars")
            m.count("continuum_events", len(out), topic="signals", direction="out")
            m.predict.observe(time.perf_counter() - began)
            done = self._completed.get(ts)
            if done is not None:
                m.signal_delay.observe(time.monotonic() - done)
        self._lake_buffer.extend(out)
        self._published += len(out)
        self.next_bar = k + 1
        self._dirty = True
        self._trim()
        if self.verbose:
            _say(f"bar {k} ts={ts} signals={len(out)} group={self.group}")
        return out

    def _trim(self) -> None:
        keep_from = self.t0 + (self.next_bar - self.window) * self.step_ms
        if self.next_bar % 256 == 0:  # a full sweep now and then; otherwise only the bar that left the window
            for s in self.symbols:
                self.bars[s] = {t: v for t, v in self.bars[s].items() if t >= keep_from}
        else:
            for s in self.symbols:
                self.bars[s].pop(keep_from - self.step_ms, None)
        nxt = self.t0 + self.next_bar * self.step_ms
        self._arrived = {t: a for t, a in self._arrived.items() if t >= nxt}
        self._completed = {t: a for t, a in self._completed.items() if t >= nxt}

    def run(self, max_bars: int | None = None, idle_exit_s: float | None = None, poll_s: float = 0.5) -> int:
        """Consume until stopped (``max_bars`` processed, ``idle_exit_s`` without a candle, or SIGTERM).

        Returns the number of bars processed by this call. A clean stop checkpoints and commits.
        """
        restored = self.restore() if self._restored is None else self._restored
        if restored:
            how = "resuming from its offsets" if self.resume_offsets else "the source publishes again from that bar"
            _say(f"restored {self.restored_from} (bar {self.next_bar}); {how}")
        else:
            _say(f"no checkpoint for group {self.group!r} in {self.ckpt_dir}: fresh state, group's committed offsets")
        self.open_consumer()
        last_msg = time.monotonic()
        try:
            while not self._stop and (max_bars is None or self._processed_here < max_bars):
                batch = self.consumer.poll(timeout_s=poll_s, max_records=2000)
                if self.metrics is not None:
                    self._observe_consumer(len(batch))
                for msg in batch:
                    if self.offsets.get((msg.topic, msg.partition), -1) > msg.offset:
                        continue  # already in the restored state
                    self.ingest(msg)
                if batch:
                    last_msg = time.monotonic()
                if self.process_ready(max_bars) and len(batch) < 2000:
                    self.bus.flush()  # caught up: the signals leave now, not after the producer's linger
                if not batch:
                    self.bus.flush()
                    self._flush_lake()
                    if idle_exit_s is not None and time.monotonic() - last_msg >= idle_exit_s:
                        break
            if self._dirty:
                self.checkpoint()
        finally:
            self.consumer.close()
        _say(
            f"stopped after {self._processed_here} bars (next bar {self.next_bar}); "
            f"{self._published} signals published; {self.consumer.deadletters} dead letters"
        )
        return self._processed_here

    def _observe_consumer(self, n: int) -> None:
        if n:
            self.metrics.count("continuum_events", n, topic=CANDLES, direction="in")
        self.metrics.set_lag(self.consumer.lag())

    def open_consumer(self):
        self._pending_seek: dict[tuple[str, int], int] = {}
        self.consumer = None
        c = self.bus.consumer([CANDLES], self.group, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.consumer = c
        if self.metrics is not None:
            self.metrics.counter_from("continuum_deadletters", lambda: c.deadletters)
        if self._pending_seek:
            c.seek(self._pending_seek)
        return c

    def stop(self, *_args) -> None:
        self._stop = True


class PartitionedLearner:
    """One member of a consumer group that shares the partitions of ``market.candles`` with other members.

    The unit of state is a partition: the symbols whose key (``exchange:symbol``) lands on partition k
    form one :class:`LearnerService` with its own fast state, rolling windows, position book, bar clock
    and checkpoints (group ``<group>.p<k>``); the meta-weights are the same for all (``make_model``). So a
    partition's signals do not depend on which member runs it, or on how often it moved: on assignment the
    member restores the partition's newest checkpoint and seeks the partition to the checkpoint's offset;
    on revocation it checkpoints the partition (signals flushed, state saved) and commits its offset before
    the partition is handed over. A member that dies leaves the partition's last checkpoint in the
    store: the next owner resumes there and re-publishes the bars after it, identical (at-least-once on
    the topic, exactly once in the lake).

    The checkpoint store is ``checkpoint_dir``: every member must see the same one (a shared volume).
    Cross-asset features (the market factor) and the position book are per partition: a member run over
    all partitions gives exactly the signals of N members, not those of one :class:`LearnerService` over
    every symbol.
    """

    def __init__(
        self,
        bus,
        make_model: Callable[[], object],
        symbols: list[str],
        exchange: str,
        group: str = "learner",
        make_positions: Callable[[], PositionRule] | None = None,
        metrics: Metrics | None = None,
        **service_kw,
    ):
        from continuum.bus import partition_for

        self.bus, self.make_model, self.exchange, self.group = bus, make_model, exchange, group
        self.make_positions, self.metrics, self.service_kw = make_positions, metrics, service_kw
        self.n_partitions = bus.partitions
        self.by_partition: dict[int, list[str]] = {}
        for s in symbols:
            self.by_partition.setdefault(partition_for(f"{exchange}:{s}", self.n_partitions), []).append(s)
        self.services: dict[tuple[str, int], LearnerService] = {}
        self.consumer = None
        self._pending_seek: dict[tuple[str, int], int] = {}
        self._stop = False
        self.processed = 0

    def _service(self, partition: int) -> LearnerService:
        return LearnerService(
            self.bus,
            self.make_model(),
            self.by_partition[partition],
            self.exchange,
            group=f"{self.group}.p{partition}",
            positions=None if self.make_positions is None else self.make_positions(),
            metrics=self.metrics,
            **self.service_kw,
        )

    def _on_assign(self, parts: list[tuple[str, int]]) -> None:
        seek = {}
        for tp in parts:
            if tp[1] not in self.by_partition or tp in self.services:
                continue  # none of our symbols live there
            svc = self._service(tp[1])
            svc.consumer = self.consumer
            if svc.restore():
                seek[tp] = svc.offsets.get(tp, 0)
            self.services[tp] = svc
        if self.consumer is None:  # an embedded consumer assigns inside its constructor
            self._pending_seek.update(seek)
        elif seek:
            self.consumer.seek(seek)
        mine = sorted(p for _, p in self.services)
        _say(f"group {self.group}: assigned partitions {sorted(p for _, p in parts)}; running {mine}")
        for tp, off in sorted(seek.items()):
            _say(f"partition {tp[1]}: restored bar {self.services[tp].next_bar}, seeking to offset {off}")

    def _on_revoke(self, parts: list[tuple[str, int]]) -> None:
        for tp in parts:
            svc = self.services.pop(tp, None)
            if svc is not None and svc._dirty:
                svc.consumer = self.consumer
                svc.checkpoint()  # its partition's offset is committed before the partition goes
        _say(f"group {self.group}: revoked partitions {sorted(p for _, p in parts)}")

    def run(self, idle_exit_s: float | None = None, poll_s: float = 0.5) -> int:
        """Consume until stopped (``idle_exit_s`` without a candle, or :meth:`stop`); returns bars processed."""
        self._pending_seek = {}
        self.consumer = None
        c = self.bus.consumer([CANDLES], self.group, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.consumer = c
        for svc in self.services.values():
            svc.consumer = c
        if self._pending_seek:
            c.seek(self._pending_seek)
        if self.metrics is not None:
            self.metrics.counter_from("continuum_deadletters", lambda: c.deadletters)
        last_msg = time.monotonic()
        try:
            while not self._stop:
                batch = c.poll(timeout_s=poll_s, max_records=2000)
                if self.metrics is not None:
                    if batch:
                        self.metrics.count("continuum_events", len(batch), topic=CANDLES, direction="in")
                    self.metrics.set_lag(c.lag())
                for msg in batch:
                    svc = self.services.get((msg.topic, msg.partition))
                    if svc is None or svc.offsets.get((msg.topic, msg.partition), -1) > msg.offset:
                        continue  # not ours (a revoked partition's leftovers) or already in the restored state
                    svc.ingest(msg)
                if batch:
                    last_msg = time.monotonic()
                n = 0
                for svc in list(self.services.values()):
                    n += svc.process_ready()
                self.processed += n
                if n and len(batch) < 2000:
                    self.bus.flush()  # caught up: the signals leave now, not after the producer's linger
                if not batch:
                    self.bus.flush()
                    for svc in self.services.values():
                        svc._flush_lake()
                    if idle_exit_s is not None and time.monotonic() - last_msg >= idle_exit_s:
                        break
            for svc in self.services.values():
                if svc._dirty:
                    svc.checkpoint()
        finally:
            c.close()
        _say(f"group {self.group}: stopped after {self.processed} bars; {c.deadletters} dead letters")
        return self.processed

    def stop(self, *_args) -> None:
        self._stop = True
        for svc in self.services.values():
            svc.stop()
