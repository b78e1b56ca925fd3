"""What fires: the signal rules, the transfer rules' names, severities and the key of every firing.

Signal rules read one stream (model, exchange, symbol) bar after bar. What a rule remembers between two
bars is explicit data, :class:`StreamState`, passed in and returned by :func:`step` (never hidden in an
object), so the engine can save it with the delivery state and a restarted alerter goes on where it was:

- ``signal``: the forecast is confident: ``confidence >= [alerts].confidence`` or
  ``|ret_24h| / vol_24h >= [alerts].zscore`` (v1 signals carry no confidence: it is computed from the
  forecast exactly as the learner does, ``erf(|z| / sqrt 2)``). Fires when the condition starts to hold,
  or when it holds on the other side (the forecast flipped), not on every bar while it holds.
- ``regime_switch``: the stream's ``regime`` word changed and the new word has held for
  ``[alerts].regime_hold`` bars in a row (the regime word flaps near its thresholds: on the demo's 8
  assets it changes 3.0 times a day per asset, a change that holds 6 bars 0.4 times). Fires on the bar
  where it has held that long.
- ``vol_spike``: ``vol_24h`` reaches ``[alerts].vol_spike`` times the median of the stream's previous
  ``[alerts].vol_window`` values (once at least ``min(24, vol_window)`` are there). Fires on the way up;
  re-arms when it falls back under.

Transfer rules are forensics' (:data:`forensics.rules.ALERT_RULES`, applied by
:func:`forensics.queries.alerts`); the engine runs that query on newly ingested transfers.

Keys are deterministic, so the same input always gives the same key: ``rule:model:exchange:symbol:bar_ts``
for a signal rule, ``rule:chain:tx_hash:log_index`` for a transfer rule.

>>> from continuum.schema import Signal
>>> def bar(i, vol):  # an hourly BTC/USDT signal with a flat forecast and this 24h volatility
...     return Signal("hope", "binance", "BTC/USDT", 1_700_000_000_000 + i * 3_600_000, 0.0, 0.0, vol, vol, vol)
>>> state, th = StreamState(), SignalThresholds(vol_window=4)
>>> for i, vol in enumerate([0.02, 0.02, 0.03, 0.02, 0.05]):
...     state, hits = step(state, bar(i, vol), th)
>>> [(h.rule, h.message) for h in hits]
[('vol_spike', 'BTC/USDT 24h vol forecast 5.00% = 2.5x its median 2.00% over the last 4 bars')]
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from forensics.rules import ALERT_RULES as TRANSFER_RULES
from forensics.rules import SEVERITY as TRANSFER_SEVERITY

SIGNAL_RULES = ("signal", "regime_switch", "vol_spike")
RULES = SIGNAL_RULES + TRANSFER_RULES
SEVERITY: dict[str, str] = {"signal": "low", "regime_switch": "medium", "vol_spike": "high", **TRANSFER_SEVERITY}
VOL_MIN_BARS = 24  # vol_spike waits for this much history (or the whole window when shorter)


def parse_rules(text: str, what: str = "alerts.rules") -> tuple[str, ...]:
    """``"signal, large"`` -> ``("signal", "large")``; an unknown name is a ValueError naming the known ones."""
    rules = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    bad = [r for r in rules if r not in RULES]
    if bad:
        raise ValueError(f"{what}: unknown rule(s) {', '.join(bad)}; known: {', '.join(RULES)}")
    return rules


@dataclass(frozen=True)
class SignalThresholds:
    """The signal rules' settings ([alerts] in the config)."""

    rules: tuple[str, ...] = SIGNAL_RULES  # which signal rules may fire
    confidence: float = 0.68  # signal: confidence at or over this (0: off); 0.68 = erf(0.99 / sqrt 2)
    zscore: float = 0.0  # signal: |ret_24h| / vol_24h at or over this (0: off)
    vol_spike: float = 2.0  # vol_spike: multiple of the trailing median (0: off)
    vol_window: int = 168  # vol_spike: bars in the trailing median
    regime_hold: int = 6  # regime_switch: bars a new regime word must hold before it counts

    @classmethod
    def from_config(cls, a: Any) -> SignalThresholds:
        """From an :class:`continuum.config.AlertsConfig`."""
        rules = tuple(r for r in parse_rules(a.rules) if r in SIGNAL_RULES)
        return cls(rules, a.confidence, a.zscore, a.vol_spike, a.vol_window, a.regime_hold)

    @property
    def vol_min_bars(self) -> int:
        return min(self.vol_window, VOL_MIN_BARS)


@dataclass(frozen=True)
class StreamState:
    """What the signal rules remember of one stream between two of its signals."""

    last_ts: int = -1  # newest bar seen; a signal at or before it is a repeat (at-least-once input): skipped
    regime: str = ""  # the regime word in force (the first one seen, then each change that held)
    candidate: str = ""  # a different word seen on the last ``held`` bars in a row
    held: int = 0
    side: int = 0  # signal: +1 / -1 while the threshold is met on that side, 0 while it is not
    spiking: bool = False  # vol_spike: True while vol_24h stays at or over the multiple
    vols: tuple[float, ...] = ()  # vol_24h of the last vol_window bars, oldest first

    def as_dict(self) -> dict[str, Any]:
        return {"last_ts": self.last_ts, "regime": self.regime, "candidate": self.candidate, "held": self.held,
                "side": self.side, "spiking": self.spiking, "vols": list(self.vols)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamState:
        return cls(int(d["last_ts"]), str(d["regime"]), str(d["candidate"]), int(d["held"]), int(d["side"]),
                   bool(d["spiking"]), tuple(d["vols"]))  # fmt: skip


@dataclass(frozen=True)
class Hit:
    """A rule that fired on one input, before it becomes an :class:`continuum.schema.Alert`."""

    rule: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


def stream_of(sig: Any) -> str:
    """The stream a signal belongs to: ``model:exchange:symbol``."""
    return f"{sig.model}:{sig.exchange}:{sig.symbol}"


def signal_key(rule: str, sig: Any) -> str:
    return f"{rule}:{stream_of(sig)}:{sig.ts}"


def transfer_key(rule: str, chain: str, tx_hash: str, log_index: int) -> str:
    return f"{rule}:{chain}:{tx_hash}:{log_index}"


def step(state: StreamState, sig: Any, th: SignalThresholds) -> tuple[StreamState, list[Hit]]:
    """Run the signal rules on the stream's next signal: ``(new state, hits)``.

    A signal at or before ``state.last_ts`` is a repeat and changes nothing. ``sig`` is a
    :class:`continuum.schema.Signal` (or anything with its fields).
    """
    if sig.ts <= state.last_ts:
        return state, []
    hits: list[Hit] = []
    z = sig.ret_24h / sig.vol_24h
    conf = sig.confidence if sig.confidence is not None else math.erf(abs(z) / math.sqrt(2.0))
    met = (th.confidence > 0 and conf >= th.confidence) or (th.zscore > 0 and abs(z) >= th.zscore)
    side = (1 if z > 0 else -1) if met and z != 0 else 0
    if "signal" in th.rules and side and side != state.side:
        word = sig.direction if sig.direction and sig.direction != "neutral" else ("up" if side > 0 else "down")
        msg = f"{sig.symbol} {word}: 24h forecast {sig.ret_24h:+.2%} ({z:+.2f} sd), confidence {conf:.2f}"
        if sig.weight is not None:
            msg += f", target weight {sig.weight:+.1%}"
        detail = {"ret_24h": sig.ret_24h, "vol_24h": sig.vol_24h, "z": z, "confidence": conf,
                  "direction": sig.direction, "weight": sig.weight,
                  "threshold": {"confidence": th.confidence, "zscore": th.zscore}}  # fmt: skip
        hits.append(Hit("signal", msg, detail))

    regime, candidate, held = state.regime, state.candidate, state.held
    if not regime or sig.regime == regime:
        regime, candidate, held = regime or sig.regime, "", 0
    elif sig.regime:
        held = held + 1 if sig.regime == candidate else 1
        candidate = sig.regime
        if held >= th.regime_hold:
            if "regime_switch" in th.rules:
                bars = f"{held} bar{'s' if held > 1 else ''}"
                msg = f"{sig.symbol} regime {regime} -> {candidate} for {bars} (24h vol forecast {sig.vol_24h:.2%})"
                detail = {"from": regime, "to": candidate, "held": held, "vol_24h": sig.vol_24h}
                hits.append(Hit("regime_switch", msg, detail))
            regime, candidate, held = candidate, "", 0

    spiking = False
    if len(state.vols) >= th.vol_min_bars:
        median = statistics.median(state.vols)
        ratio = sig.vol_24h / median if median > 0 else math.inf
        spiking = th.vol_spike > 0 and ratio >= th.vol_spike
        if "vol_spike" in th.rules and spiking and not state.spiking:
            msg = (
                f"{sig.symbol} 24h vol forecast {sig.vol_24h:.2%} = {ratio:.1f}x its median {median:.2%} "
                f"over the last {len(state.vols)} bars"
            )
            detail = {"vol_24h": sig.vol_24h, "median": median, "ratio": ratio, "bars": len(state.vols),
                      "threshold": th.vol_spike}  # fmt: skip
            hits.append(Hit("vol_spike", msg, detail))
    vols = (*state.vols, sig.vol_24h)[-th.vol_window :]
    return StreamState(sig.ts, regime, candidate, held, side, spiking, vols), hits


def transfer_message(row: dict[str, Any]) -> str:
    """One line for a transfer rule's hit (a row of :func:`forensics.queries.alerts`)."""

    def who(address: str, label: str | None) -> str:
        return f"{address[:8]}..{address[-4:]}" + (f" ({label})" if label else "")

    value = f"{row['value']:,.2f} {row.get('token_label') or row['symbol'] or 'tokens'}"
    return (
        f"{row['rule']}: {value} {who(row['from_address'], row['from_label'])} -> "
        f"{who(row['to_address'], row['to_label'])}: {row['detail']} (tx {row['tx_hash'][:12]}..)"
    )
