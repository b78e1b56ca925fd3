"""The signal rules on streams worked out by hand: when each fires, when it stays quiet, what it remembers."""

from __future__ import annotations

import math

import pytest

from alerts.rules import SignalThresholds, StreamState, parse_rules, step
from tests.alerts.conftest import STORY_RULES, sig, story


def run(signals, th: SignalThresholds) -> dict[int, list[str]]:
    """{bar index: rules that fired} over a stream."""
    state, out = StreamState(), {}
    for i, s in enumerate(signals):
        state, hits = step(state, s, th)
        if hits:
            out[i] = [h.rule for h in hits]
    return out


def test_story_fires_what_was_worked_out():
    assert run(story(), SignalThresholds(confidence=0.75, vol_window=24, regime_hold=1)) == STORY_RULES


def test_signal_fires_on_crossing_and_on_a_flip_not_while_it_holds():
    th = SignalThresholds(rules=("signal",), confidence=0.0, zscore=1.0)
    rets = [0.0, 0.025, 0.03, 0.01, 0.03, -0.03, -0.04, 0.0]  # over vol 0.02: z 0, 1.25, 1.5, 0.5, 1.5, -1.5, -2, 0
    fired = run([sig("ETH/USDT", i, ret=r) for i, r in enumerate(rets)], th)
    assert fired == {1: ["signal"], 4: ["signal"], 5: ["signal"]}  # up, up again after dropping under, flip down


def test_signal_uses_the_v2_confidence_and_computes_it_for_v1():
    th = SignalThresholds(rules=("signal",), confidence=0.9)
    # v2: the feed's confidence decides, whatever z says
    v2 = [sig("SOL/USDT", 0, ret=0.001, confidence=0.95, weight=0.2, direction="long")]
    state, hits = step(StreamState(), v2[0], th)
    assert [h.rule for h in hits] == ["signal"] and "SOL/USDT long" in hits[0].message and "+20.0%" in hits[0].message
    # v1 (no confidence): erf(|z| / sqrt 2) as the learner computes it; z = 1.7 -> 0.911, z = 1.6 -> 0.890
    assert math.erf(1.7 / math.sqrt(2)) > 0.9 > math.erf(1.6 / math.sqrt(2))
    assert run([sig("SOL/USDT", 0, ret=0.034)], th) == {0: ["signal"]}
    assert run([sig("SOL/USDT", 0, ret=0.032)], th) == {}


def test_regime_switch_waits_for_the_new_word_to_hold():
    words = ["calm", "normal", "calm", "normal", "normal", "normal", "volatile", "normal", "normal"]
    signals = [sig("BTC/USDT", i, regime=w) for i, w in enumerate(words)]
    assert run(signals, SignalThresholds(rules=("regime_switch",), regime_hold=1)) == {
        i: ["regime_switch"] for i in (1, 2, 3, 6, 7)
    }
    held = SignalThresholds(rules=("regime_switch",), regime_hold=3)
    assert run(signals, held) == {5: ["regime_switch"]}  # calm -> normal once it held bars 3, 4, 5
    state = StreamState()
    for s in signals[:6]:
        state, hits = step(state, s, held)
    assert hits[0].message.startswith("BTC/USDT regime calm -> normal for 3 bars")
    assert state.regime == "normal" and state.candidate == ""


def test_vol_spike_needs_history_fires_once_and_rearms():
    th = SignalThresholds(rules=("vol_spike",), vol_window=4, vol_spike=2.0)
    vols = [0.02, 0.05, 0.02, 0.02, 0.02, 0.05, 0.06, 0.02, 0.02, 0.02, 0.02, 0.05]
    # bar 1: 1 bar of history (it needs min(24, 4) = 4); bar 5: 2.5x the median 0.02 of bars 1-4; bar 6: 3x,
    # still over: no repeat; bars 7-10 under (bar 7 against a median of 0.035): re-armed; bar 11: 2.5x the
    # median 0.02 of bars 7-10
    fired = run([sig("BTC/USDT", i, vol=v) for i, v in enumerate(vols)], th)
    assert fired == {5: ["vol_spike"], 11: ["vol_spike"]}


def test_repeats_and_old_bars_change_nothing():
    th = SignalThresholds(regime_hold=1)
    state, _ = step(StreamState(), sig("BTC/USDT", 5, regime="calm"), th)
    for again in (sig("BTC/USDT", 5, regime="volatile"), sig("BTC/USDT", 3, regime="volatile")):
        assert step(state, again, th) == (state, [])


def test_state_round_trips_through_json():
    import json

    state = StreamState()
    for s in story()[:33]:
        state, _ = step(state, s, SignalThresholds(vol_window=24))
    assert StreamState.from_dict(json.loads(json.dumps(state.as_dict()))) == state


def test_parse_rules():
    assert parse_rules(" signal, large ,signal") == ("signal", "large")
    with pytest.raises(ValueError, match="unknown rule.*bogus; known: signal, regime_switch, vol_spike, sanctioned"):
        parse_rules("signal,bogus")
