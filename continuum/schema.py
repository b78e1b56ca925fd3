"""The one event schema: every event that crosses the bus or lands in the lake is defined here.

Each event type is a frozen dataclass, and the one registration of its kind:
- ``KIND``: the event name, also the lake partition ``kind=...``;
- ``VERSION``: the schema version carried as ``v`` in the JSON encoding; ``OLDER_VERSIONS`` lists earlier
  versions still decoded (their events lack fields added since, which take their defaults);
- ``TOPIC``: the bus topic it travels on (:data:`TOPICS` lists them, ``deadletter`` last);
- ``LAKE``: its lake table's partition columns and time partition (``None``: never stored);
- ``LAKE_SORTED``: columns the lake keeps the table sorted by, one copy each, in time-ordered runs (empty: one
  file per partition in natural-key order), so a query on one of them reads only the row groups it needs;
- ``natural_key()``: the identity used to deduplicate (lake appends, at-least-once consumers);
- ``partition_key()``: the Kafka message key, so order holds per asset / per address.

Decoding is strict: a missing or unknown field, a wrong type, a value out of range or an unknown
version raises :class:`SchemaError` naming the field. Nothing is coerced silently (a string "1.5" is
not a float; a float 3.0 is not an int), because a silently coerced price is a wrong signal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from continuum.timeframes import is_timeframe

__all__ = [
    "SchemaError",
    "Event",
    "Candle",
    "Trade",
    "Block",
    "Transfer",
    "Swap",
    "Signal",
    "Retraction",
    "Alert",
    "direction_of",
    "EVENT_TYPES",
    "TOPICS",
    "DEADLETTER",
    "encode",
    "decode",
    "ts_from_ms",
    "ms_from_ts",
    "field_types",
]

_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
_HASH = re.compile(r"^0x[0-9a-f]{64}$")


class SchemaError(ValueError):
    """An event that does not match its schema. ``field`` names the offending field."""

    def __init__(self, kind: str, field_name: str, reason: str):
        self.kind, self.field, self.reason = kind, field_name, reason
        super().__init__(f"{kind}.{field_name}: {reason}")


def ts_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_from_ts(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


# --------------------------------------------------------------------------- field checks
def _check_type(kind: str, name: str, value: Any, typ: type) -> None:
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise SchemaError(kind, name, f"must be finite, got {value!r}")
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise SchemaError(kind, name, f"expected {typ.__name__}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True, slots=True)
class Event:
    """Base class. Subclasses declare typed fields; ``validate`` runs on construction."""

    KIND: ClassVar[str] = "event"
    VERSION: ClassVar[int] = 1
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = ()
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ()
    TOPIC: ClassVar[str] = ""
    # lake table: (partition columns in path order, time partition "year" | "month" taken from ts)
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = None
    # lake copies sorted by these columns (continuum.lake: sorted runs); empty: one natural-key-sorted file
    LAKE_SORTED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name, base, optional in _spec(type(self)).checks:
            value = getattr(self, name)
            if value is None and optional:
                continue
            # fast path for the common exact types; anything else gets the full check and its message
            vt = type(value)
            if vt is base and (vt is not float or math.isfinite(value)):
                continue
            _check_type(self.KIND, name, value, base)
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    def natural_key(self) -> tuple:
        return tuple(getattr(self, k) for k in self.NATURAL_KEY)

    def partition_key(self) -> str:
        """The Kafka key; concrete events key by asset or address so order holds per key."""
        return ":".join(str(v) for v in self.natural_key())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "v": self.VERSION, **dataclasses.asdict(self)}

    def _fail(self, name: str, reason: str) -> None:
        raise SchemaError(self.KIND, name, reason)

    def _positive(self, *names: str, allow_zero: bool = False) -> None:
        for n in names:
            x = getattr(self, n)
            if x is None:
                continue
            if x < 0 or (x == 0 and not allow_zero):
                self._fail(n, f"must be {'>= 0' if allow_zero else '> 0'}, got {x!r}")

    def _address(self, *names: str) -> None:
        for n in names:
            x = getattr(self, n)
            if x is not None and not _ADDRESS.match(x):
                self._fail(n, f"must be a lower-case 0x-prefixed 20-byte hex address, got {x!r}")

    def _hash(self, *names: str) -> None:
        for n in names:
            x = getattr(self, n)
            if x is not None and not _HASH.match(x):
                self._fail(n, f"must be a lower-case 0x-prefixed 32-byte hex hash, got {x!r}")

    def _ts(self, *names: str) -> None:
        for n in names:
            # 2009-01-01 .. 2100-01-01 in ms: catches seconds-vs-ms mix-ups
            x = getattr(self, n)
            if not 1_230_768_000_000 <= x <= 4_102_444_800_000:
                self._fail(n, f"must be a UTC timestamp in milliseconds (2009..2100), got {x!r}")


_TYPES = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "str | None": str,
    "float | None": float,
    "int | None": int,
}


@dataclass(frozen=True, slots=True)
class _Spec:
    """Per event class, computed once: the field checks, names and required fields (hot path of decode)."""

    checks: tuple[tuple[str, type, bool], ...]  # (name, base type, None allowed)
    names: tuple[str, ...]
    name_set: frozenset[str]
    required: tuple[str, ...]


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        fs = dataclasses.fields(cls)
        checks = tuple(
            (
                f.name,
                _TYPES[f.type] if isinstance(f.type, str) else f.type,
                isinstance(f.type, str) and f.type.endswith("| None"),
            )
            for f in fs
        )
        required = tuple(
            f.name for f in fs if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        names = tuple(f.name for f in fs)
        spec = _SPECS[cls] = _Spec(checks, names, frozenset(names), required)
    return spec


_SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]+)?")


def _symbol_ok(ev: Event, name: str) -> None:
    s = getattr(ev, name)
    if not _SYMBOL.fullmatch(s):
        ev._fail(name, f"must look like BASE/QUOTE in upper case (e.g. BTC/USDT), got {s!r}")


@dataclass(frozen=True, slots=True)
class Candle(Event):
    """One OHLCV bar. ``ts`` is the bar's open time (UTC ms), as in ccxt and freqtrade."""

    KIND: ClassVar[str] = "candle"
    TOPIC: ClassVar[str] = "market.candles"
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = (("exchange", "symbol", "timeframe"), "year")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("exchange", "symbol", "timeframe", "ts")
    exchange: str
    symbol: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True

    def validate(self) -> None:
        _symbol_ok(self, "symbol")
        self._ts("ts")
        if not is_timeframe(self.timeframe):
            self._fail("timeframe", f"must look like 1m, 1h, 1d; got {self.timeframe!r}")
        self._positive("open", "high", "low", "close")
        self._positive("volume", allow_zero=True)
        if self.high < max(self.open, self.close, self.low):
            self._fail("high", f"{self.high} is below open/close/low")
        if self.low > min(self.open, self.close):
            self._fail("low", f"{self.low} is above open/close")

    def partition_key(self) -> str:
        return f"{self.exchange}:{self.symbol}"


@dataclass(frozen=True, slots=True)
class Trade(Event):
    KIND: ClassVar[str] = "trade"
    TOPIC: ClassVar[str] = "market.trades"
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = (("exchange", "symbol"), "month")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("exchange", "symbol", "trade_id")
    exchange: str
    symbol: str
    trade_id: str
    ts: int
    price: float
    amount: float
    side: str

    def validate(self) -> None:
        _symbol_ok(self, "symbol")
        self._ts("ts")
        self._positive("price", "amount")
        if self.side not in ("buy", "sell", "unknown"):
            self._fail("side", f"must be buy, sell or unknown, got {self.side!r}")

    def partition_key(self) -> str:
        return f"{self.exchange}:{self.symbol}"


@dataclass(frozen=True, slots=True)
class Block(Event):
    KIND: ClassVar[str] = "block"
    TOPIC: ClassVar[str] = "chain.blocks"
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = (("chain",), "month")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("chain", "number", "hash")
    chain: str
    number: int
    hash: str
    parent_hash: str
    ts: int
    tx_count: int
    gas_used: int
    base_fee_gwei: float | None = None
    final: bool = False

    def validate(self) -> None:
        self._hash("hash", "parent_hash")
        self._ts("ts")
        self._positive("tx_count", "gas_used", "number", allow_zero=True)

    def partition_key(self) -> str:
        return f"{self.chain}:blocks"


@dataclass(frozen=True, slots=True)
class ChainLog(Event):
    """What every event read from a transaction or its logs carries: where on the chain it happened.

    Not a kind of its own; :class:`Transfer` and :class:`Swap` extend it."""

    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = (("chain",), "month")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("chain", "tx_hash", "log_index")
    chain: str
    block_number: int
    block_hash: str
    ts: int
    tx_hash: str
    log_index: int  # -1 for a native transfer (the transaction itself)

    def validate(self) -> None:
        self._hash("block_hash", "tx_hash")
        self._ts("ts")


@dataclass(frozen=True, slots=True)
class Transfer(ChainLog):
    """A native or ERC-20 transfer. ``token`` is None for the chain's native coin."""

    KIND: ClassVar[str] = "transfer"
    TOPIC: ClassVar[str] = "chain.transfers"
    # forensics follows funds by sender (forward hops) and by recipient (backward hops)
    LAKE_SORTED: ClassVar[tuple[str, ...]] = ("from_address", "to_address")
    token: str | None
    symbol: str | None
    from_address: str
    to_address: str
    value: float  # in token units (decimals applied)
    raw_value: str  # exact integer amount as a decimal string
    from_label: str | None = None
    to_label: str | None = None

    def validate(self) -> None:
        ChainLog.validate(self)
        self._address("token", "from_address", "to_address")
        self._positive("value", allow_zero=True)
        if not self.raw_value.isdigit():
            self._fail("raw_value", f"must be a non-negative integer string, got {self.raw_value!r}")
        if self.log_index < -1:
            self._fail("log_index", f"must be >= -1, got {self.log_index}")

    def partition_key(self) -> str:
        return f"{self.chain}:{self.from_address}"


@dataclass(frozen=True, slots=True)
class Swap(ChainLog):
    KIND: ClassVar[str] = "swap"
    TOPIC: ClassVar[str] = "chain.swaps"
    dex: str  # uniswap_v2 | uniswap_v3
    pool: str
    sender: str
    recipient: str
    token_in: str | None
    token_out: str | None
    amount_in: float
    amount_out: float

    def validate(self) -> None:
        ChainLog.validate(self)
        self._address("pool", "sender", "recipient", "token_in", "token_out")
        self._positive("amount_in", "amount_out", allow_zero=True)
        if self.dex not in ("uniswap_v2", "uniswap_v3"):
            self._fail("dex", f"must be uniswap_v2 or uniswap_v3, got {self.dex!r}")

    def partition_key(self) -> str:
        return f"{self.chain}:{self.pool}"


@dataclass(frozen=True, slots=True)
class Retraction(Event):
    """Tells consumers and the lake to drop everything derived from an orphaned block (a reorg)."""

    KIND: ClassVar[str] = "retraction"
    TOPIC: ClassVar[str] = "chain.blocks"
    # not stored: the lake drops the rows of the retracted block instead
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("chain", "block_number", "block_hash")
    chain: str
    block_number: int
    block_hash: str
    ts: int

    def validate(self) -> None:
        self._hash("block_hash")
        self._ts("ts")

    def partition_key(self) -> str:
        return f"{self.chain}:blocks"


@dataclass(frozen=True, slots=True)
class Signal(Event):
    """One forecast for one asset at one bar, with its uncertainty, the model's memory activity and what to hold.

    v2 added ``direction``, ``weight`` and ``confidence`` (docs/signals.md); a v1 signal (the lake's older
    rows, an older producer) still decodes, with ``direction=""`` and the other two ``None``.
    """

    KIND: ClassVar[str] = "signal"
    VERSION: ClassVar[int] = 2
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = (1,)
    TOPIC: ClassVar[str] = "signals"
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = (("model", "symbol"), "year")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("model", "exchange", "symbol", "ts")
    model: str
    exchange: str
    symbol: str
    ts: int  # open time of the bar the forecast was made after (its close is the forecast time)
    ret_1h: float
    ret_24h: float
    vol_24h: float  # forecast std-dev of the next-24h log return
    ret_1h_std: float
    ret_24h_std: float
    regime: str = ""  # the model's own reading (e.g. calm/volatile), never a label fed to it
    activity: dict = field(default_factory=dict)  # per-level update norms, effective lrs, surprise
    direction: str = ""  # long | short | neutral: the side of ``weight`` ("" where no position rule ran)
    weight: float | None = None  # target weight, fraction of equity (< 0 short), from the feed's position rule
    confidence: float | None = None  # 2 P(the 24h return has the forecast's sign) - 1 under the forecast: 0..1

    def validate(self) -> None:
        _symbol_ok(self, "symbol")
        self._ts("ts")
        self._positive("vol_24h", "ret_1h_std", "ret_24h_std")
        if self.direction not in DIRECTIONS:
            self._fail("direction", f"must be one of {', '.join(DIRECTIONS[1:])} (or empty), got {self.direction!r}")
        if self.weight is not None and self.direction != direction_of(self.weight):
            self._fail("direction", f"{self.direction!r} contradicts weight {self.weight!r}")
        if self.weight is None and self.direction:
            self._fail("direction", "given without a weight")
        if self.confidence is not None and not 0 <= self.confidence <= 1:
            self._fail("confidence", f"must be within 0..1, got {self.confidence!r}")
        for k, v in self.activity.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
                self._fail("activity", f"must map names to numbers, got {k!r}: {v!r}")
            if not math.isfinite(v):
                self._fail("activity", f"{k} must be finite, got {v!r}")

    def partition_key(self) -> str:
        return f"{self.exchange}:{self.symbol}"


DIRECTIONS = ("", "long", "short", "neutral")
NEUTRAL_WEIGHT = 1e-3  # |weight| below this (0.1% of equity) is no position: direction "neutral"


def direction_of(weight: float) -> str:
    """The side of a target weight: long, short, or neutral when |weight| < ``NEUTRAL_WEIGHT``."""
    if weight >= NEUTRAL_WEIGHT:
        return "long"
    if weight <= -NEUTRAL_WEIGHT:
        return "short"
    return "neutral"


SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Alert(Event):
    """One firing of an alert rule (docs/alerts.md): what the ``alerts`` part posts to webhooks and logs.

    ``key`` names the firing deterministically (rule, stream or transfer, bar time), so a restarted
    alerter that meets the same input again knows it fired already; it is the natural key. ``ts`` is when
    it fired (wall clock), ``event_ts`` the bar or block time it is about. ``detail`` holds the rule's
    numbers (thresholds, values, addresses); the lake stores it as JSON text.
    """

    KIND: ClassVar[str] = "alert"
    TOPIC: ClassVar[str] = "alerts"
    LAKE: ClassVar[tuple[tuple[str, ...], str] | None] = ((), "month")
    NATURAL_KEY: ClassVar[tuple[str, ...]] = ("key",)
    key: str
    ts: int  # when the alert fired (UTC ms)
    rule: str
    symbol: str  # the asset (BTC/USDT) or, for a transfer rule, the token (USDT, ETH)
    severity: str  # low | medium | high
    message: str  # one line for a human
    event_ts: int  # open time of the bar, or time of the block, the alert is about (UTC ms)
    detail: dict = field(default_factory=dict)

    def validate(self) -> None:
        self._ts("ts", "event_ts")
        for name in ("key", "rule", "message"):
            if not getattr(self, name):
                self._fail(name, "must not be empty")
        if self.severity not in SEVERITIES:
            self._fail("severity", f"must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")

    def partition_key(self) -> str:
        return self.key


EVENT_TYPES: dict[str, type[Event]] = {
    c.KIND: c for c in (Candle, Trade, Block, Transfer, Swap, Signal, Retraction, Alert)
}
DEADLETTER = "deadletter"  # malformed messages, with the reason and their bytes
TOPICS: tuple[str, ...] = (*dict.fromkeys(c.TOPIC for c in EVENT_TYPES.values()), DEADLETTER)
_TYPES["dict"] = dict


def field_types(cls: type[Event]) -> dict[str, type]:
    """Each field's base type (``str``, ``int``, ``float``, ``bool``, ``dict``; ``X | None`` gives ``X``): what a
    column of the event's table holds even when every row of a batch has it null."""
    return {name: base for name, base, _ in _spec(cls).checks}


def encode(event: Event) -> bytes:
    """JSON bytes with ``kind`` and ``v``; compact, keys sorted so equal events encode equally.

    orjson writes it (the bus's hot path: ~10x faster than ``json``); values orjson refuses (an
    integer beyond 64 bits) fall back to ``json``. Both write UTF-8 JSON that :func:`decode` reads back
    to the equal event.
    """
    obj = {"kind": event.KIND, "v": event.VERSION}
    for name in _spec(type(event)).names:
        obj[name] = getattr(event, name)
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes | str | dict) -> Event:
    """Strict inverse of :func:`encode`. Raises :class:`SchemaError` naming the field at fault."""
    if isinstance(data, dict):
        obj = data
    else:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson refuses a few things json reads (NaN literals, integers beyond 64 bits): let json
            # decide, so what is accepted or rejected, and the reason given, stay exactly as before
            try:
                obj = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SchemaError("event", "json", f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise SchemaError("event", "json", f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SchemaError("event", "kind", f"unknown event kind {kind!r}; known: {sorted(EVENT_TYPES)}")
    v = obj.get("v")
    if (v != cls.VERSION and v not in cls.OLDER_VERSIONS) or isinstance(v, bool):
        reads = "/".join(f"v{x}" for x in (*cls.OLDER_VERSIONS, cls.VERSION))
        raise SchemaError(kind, "v", f"unsupported schema version {v!r} (this build reads {reads})")
    spec = _spec(cls)
    extra = obj.keys() - spec.name_set - {"kind", "v"}
    if extra:
        raise SchemaError(kind, sorted(extra)[0], "unknown field")
    for name in spec.required:
        if name not in obj:
            raise SchemaError(kind, name, "missing")
    kwargs = {name: obj[name] for name in spec.names if name in obj}
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded above
        raise SchemaError(kind, "fields", str(e)) from None
