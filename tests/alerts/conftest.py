"""Fixtures of the alert tests: a real webhook receiver, a config on a fresh lake, signals worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from continuum.config import Config
from continuum.schema import Signal
from tests.services.webhook import Receiver

HOUR = 3_600_000
T0 = 1_714_521_600_000  # 2024-05-01 00:00 UTC
SECRET = "/hooks/T0SECRET99/B0SECRET99/s3cr3tTOKENabcdef"  # a webhook path that must never be printed


def sig(
    symbol: str, i: int, *, vol: float = 0.02, ret: float = 0.0, regime: str = "normal", t0: int = T0, **kw: Any
) -> Signal:
    """Bar ``i`` (hourly from ``t0``) of a stream: 24h forecast ``ret`` with std ``vol``, the regime word."""
    return Signal(
        kw.pop("model", "hope"), kw.pop("exchange", "binance"), symbol, t0 + i * HOUR, 0.0, ret, vol, vol / 5, vol,
        regime, **kw,
    )  # fmt: skip


def story(symbol: str = "BTC/USDT", bars: int = 40, t0: int = T0, **kw: Any) -> list[Signal]:
    """A stream whose alerts are known: calm and normal, then at bar 30 the volatility forecast jumps
    (0.02 -> 0.05: vol_spike, and regime normal -> volatile: regime_switch with regime_hold 1), and at
    bar 35 a confident up forecast (ret 0.06 over vol 0.05: z 1.2, confidence 0.77: signal)."""
    out = []
    for i in range(bars):
        if i < 30:
            out.append(sig(symbol, i, t0=t0, **kw))
        else:
            out.append(sig(symbol, i, vol=0.05, ret=0.06 if i >= 35 else 0.0, regime="volatile", t0=t0, **kw))
    return out


STORY_RULES = {30: ["regime_switch", "vol_spike"], 35: ["signal"]}


def story_keys(symbol: str = "BTC/USDT", model: str = "hope", exchange: str = "binance", t0: int = T0) -> list[str]:
    return [f"{r}:{model}:{exchange}:{symbol}:{t0 + i * HOUR}" for i, rules in STORY_RULES.items() for r in rules]


def recent_t0(hours_ago: int = 48) -> int:
    """An hour boundary ``hours_ago`` before now: a story from it has its alerts within the last day."""
    import time

    now = int(time.time() * 1000)
    return now - now % HOUR - hours_ago * HOUR


def make_config(tmp_path: Path, webhooks: str = "", **alerts: Any) -> Config:
    """A checked config on ``tmp_path``: its lake, its state directory, fast retries, small windows."""
    cfg = Config()
    cfg.lake.root = str(tmp_path / "lake")
    a = cfg.alerts
    a.state_dir = str(tmp_path / "state")
    a.webhooks = webhooks
    a.vol_window, a.regime_hold, a.confidence = 24, 1, 0.75
    a.backoff_s, a.backoff_max_s, a.timeout_s, a.redeliver_s = 0.05, 0.2, 2.0, 0.3
    for k, v in alerts.items():
        setattr(a, k, v)
    return cfg.check()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r
