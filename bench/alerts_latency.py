"""Alert latency and cost: what ``Alerter.on_signals`` adds to a bar, and fire -> webhook time.

A real HTTP receiver on 127.0.0.1 (tests/services/webhook.py) takes the POSTs. 64 hourly streams are warmed
up on 200 calm bars (so every stream's vol window is full: the rule state is at its largest), then:

- ``quiet_bar_ms``: one ``on_signals`` call with a bar of 64 signals that fires nothing (rules + state write);
- ``firing_bar_ms``: the same with 8 vol spikes in the bar (+ the outbox append to the lake, the log lines);
- ``fire_to_post_ms``: from the start of that call to each alert's arrival at the receiver;
- ``posts_per_s``: 500 alerts queued at once, delivered one after another to one webhook;
- ``rules_signals_per_s``: the rules alone (dry run) over 64 x 2000 signals, as a ``--since`` replay runs them.

    python bench/alerts_latency.py          # writes bench/results/alerts.json
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerts.engine import Alerter  # noqa: E402
from continuum.config import Config  # noqa: E402
from continuum.schema import Signal  # noqa: E402
from tests.services.webhook import Receiver  # noqa: E402

HOUR = 3_600_000
N_STREAMS, WARM, BARS = 64, 200, 60


def _cfg(tmp: Path, url: str) -> Config:
    cfg = Config()
    cfg.lake.root = str(tmp / "lake")
    cfg.alerts.state_dir = str(tmp / "state")
    cfg.alerts.webhooks = url
    cfg.alerts.queue_size = 10_000
    return cfg.check()


def _bar(t0: int, i: int, spiking: set[int]) -> list[Signal]:
    out = []
    for s in range(N_STREAMS):
        vol = 0.05 if s in spiking else 0.02 + 0.0001 * ((i * 7 + s) % 11)
        out.append(Signal("hope", "binance", f"A{s}/USDT", t0 + i * HOUR, 0.0, 0.0, vol, vol / 5, vol, "normal"))
    return out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    logging.disable(logging.WARNING)  # the ALERT lines would dominate the timing of a terminal
    now = int(time.time() * 1000)
    t0 = now - now % HOUR - (WARM + BARS + 2) * HOUR
    out: dict = {"machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d, Receiver() as rx:
        tmp = Path(d)
        with Alerter(_cfg(tmp, rx.url()), drain_s=60) as a:
            a.on_signals([s for i in range(WARM) for s in _bar(t0, i, set())], fire=False)
            quiet, firing, fire_to_post = [], [], []
            for i in range(WARM, WARM + BARS):
                spiking = set(range(8 * (i % 8), 8 * (i % 8) + 8)) if i % 2 == 0 else set()
                n0 = len(rx.requests)
                t = time.monotonic()
                fired = a.on_signals(_bar(t0, i, spiking))
                (firing if fired else quiet).append((time.monotonic() - t) * 1000)
                if fired:
                    got = rx.wait_for(n0 + len(fired), timeout_s=30)
                    fire_to_post += [(r.t - t) * 1000 for r in got[n0:]]
            out["state_json_bytes"] = (tmp / "state" / "state.json").stat().st_size
        for name, xs in (("quiet_bar_ms", quiet), ("firing_bar_ms", firing), ("fire_to_post_ms", fire_to_post)):
            out[name] = {"n": len(xs), "p50": round(_pct(xs, 0.5), 2), "p99": round(_pct(xs, 0.99), 2)}

    with tempfile.TemporaryDirectory() as d, Receiver() as rx, Alerter(_cfg(Path(d), rx.url()), drain_s=120) as a:
        a.on_signals([s for i in range(WARM) for s in _bar(t0, i, set())], fire=False)
        sigs = []
        for i in range(WARM, WARM + 500 // 8 * 2 + 2):  # every other bar 8 spikes: 500+ alerts
            sigs += _bar(t0, i, set(range(8 * (i % 8), 8 * (i % 8) + 8)) if i % 2 == 0 else set())
        fired = a.on_signals(sigs)[:500]
        t = time.monotonic()
        rx.wait_for(len(fired), timeout_s=120)
        out["posts_per_s"] = round(len(fired) / (time.monotonic() - t), 1)

    with tempfile.TemporaryDirectory() as d:
        sigs = [s for i in range(2000) for s in _bar(t0, i, {i % 64} if i % 50 == 0 else set())]
        with Alerter(_cfg(Path(d), ""), dry_run=True) as a:
            t = time.monotonic()
            a.on_signals(sigs)
            out["rules_signals_per_s"] = round(len(sigs) / (time.monotonic() - t))
    path = ROOT / "bench" / "results" / "alerts.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
