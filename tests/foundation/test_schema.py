"""The event schema: round trips, natural keys, strict decoding that names the field at fault."""

from __future__ import annotations

import json

import pytest

from continuum.schema import (
    EVENT_TYPES,
    Alert,
    Block,
    Candle,
    Retraction,
    SchemaError,
    Signal,
    Swap,
    Trade,
    Transfer,
    decode,
    encode,
)

H = "0x" + "ab" * 32
A = "0x" + "12" * 20
TS = 1_700_000_000_000
SAMPLES = [
    Candle("binance", "BTC/USDT", "1h", TS, 100.0, 110.0, 95.0, 105.0, 12.5),
    Trade("binance", "ETH/USDT", "123", TS, 2000.5, 0.1, "buy"),
    Block("ethereum", 17173049, H, H, TS, 150, 12_000_000, 31.2),
    Transfer("ethereum", 17173049, H, TS, H, 3, A, "USDT", A, A, 1.5, "1500000"),
    Swap("ethereum", 17173049, H, TS, H, 4, "uniswap_v2", A, A, A, A, A, 1.0, 2.0),
    Signal("hope", "binance", "BTC/USDT", TS, 0.001, -0.002, 0.03, 0.006, 0.03, "calm", {"cms_l0_update_norm": 0.1}),
    Retraction("ethereum", 17173049, H, TS),
    Alert(
        "vol_spike:hope:binance:BTC/USDT:" + str(TS),
        TS + 5,
        "vol_spike",
        "BTC/USDT",
        "high",
        "vol 2.5x",
        TS,
        {"r": 2.5},
    ),
]


def test_every_kind_has_a_sample():
    assert {s.KIND for s in SAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.KIND)
def test_round_trip(event):
    raw = encode(event)
    assert json.loads(raw)["v"] == event.VERSION
    assert decode(raw) == event
    assert decode(raw).natural_key() == event.natural_key()
    assert isinstance(event.partition_key(), str) and event.partition_key()


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"close": "105.0"}, "close"),  # a string is not a float: nothing is coerced
        ({"ts": 1_700_000_000}, "ts"),  # seconds, not milliseconds
        ({"high": 90.0}, "high"),  # below open/close
        ({"open": -1.0}, "open"),
        ({"volume": float("nan")}, "volume"),
        ({"symbol": "btcusdt"}, "symbol"),
        ({"v": 2}, "v"),
        ({"extra": 1}, "extra"),
        ({"kind": "nope"}, "kind"),
        ({"ts": True}, "ts"),
    ],
)
def test_strict_decoding_names_the_field(patch, field):
    obj = json.loads(encode(SAMPLES[0]))
    obj.update(patch)
    with pytest.raises(SchemaError) as e:
        decode(json.dumps(obj).encode())
    assert e.value.field == field


def test_missing_field_and_bad_json():
    obj = json.loads(encode(SAMPLES[0]))
    del obj["close"]
    with pytest.raises(SchemaError, match="close: missing"):
        decode(json.dumps(obj))
    with pytest.raises(SchemaError, match="not valid JSON"):
        decode(b"{not json")
    with pytest.raises(SchemaError, match="JSON object"):
        decode(b"[1, 2]")


def test_addresses_must_be_lowercase_hex():
    with pytest.raises(SchemaError) as e:
        Transfer("ethereum", 1, H, TS, H, 0, None, None, "0xABC", A, 1.0, "1")
    assert e.value.field == "from_address"


# ------------------------------------------------------------------------------------ signal v2
V2 = Signal("hope", "binance", "ETH/USDT", TS, 0.001, 0.004, 0.05, 0.01, 0.05, "normal", {}, "long", 0.031, 0.0638)


def test_signal_v2_round_trips_direction_weight_confidence():
    raw = encode(V2)
    obj = json.loads(raw)
    assert obj["v"] == 2 and obj["direction"] == "long" and obj["weight"] == 0.031 and obj["confidence"] == 0.0638
    assert decode(raw) == V2


def test_a_v1_signal_still_decodes_without_the_new_fields():
    """Older producers and the lake's older rows: v1 has no direction/weight/confidence."""
    obj = json.loads(encode(V2))
    for k in ("direction", "weight", "confidence"):
        del obj[k]
    obj["v"] = 1
    old = decode(json.dumps(obj))
    assert old.direction == "" and old.weight is None and old.confidence is None
    assert old.natural_key() == V2.natural_key()
    obj["v"] = 3
    with pytest.raises(SchemaError, match="reads v1/v2") as e:
        decode(json.dumps(obj))
    assert e.value.field == "v"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"direction": "buy"}, "direction"),
        ({"direction": "short"}, "direction"),  # contradicts weight 0.031
        ({"weight": 0.0005}, "direction"),  # that small a weight is neutral
        ({"weight": None}, "direction"),  # a side without a weight
        ({"confidence": 1.5}, "confidence"),
        ({"weight": "0.03"}, "weight"),
        ({"weight": float("inf")}, "weight"),
    ],
)
def test_signal_direction_must_match_its_weight(patch, field):
    obj = {**json.loads(encode(V2)), **patch}
    with pytest.raises(SchemaError) as e:
        decode(obj)
    assert e.value.field == field


def test_direction_of_weight():
    from continuum.schema import NEUTRAL_WEIGHT, direction_of

    assert [direction_of(w) for w in (0.2, -0.2, 0.0, NEUTRAL_WEIGHT / 2, -NEUTRAL_WEIGHT)] == [
        "long",
        "short",
        "neutral",
        "neutral",
        "short",
    ]
