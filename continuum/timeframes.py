"""Timeframes and dates: the one place a bar length or a user's date is parsed.

A timeframe is a fixed number of milliseconds (``1m``, ``1h``, ``4h``, ``1d``, ``1w``): every part that
lays bars on a grid (the replay source, the live learner, the config check) asks :func:`timeframe_ms`.
Calendar months (ccxt's ``1M``) have no fixed length and so no grid: they are refused everywhere, with
the same message.

>>> timeframe_ms("4h")
14400000
>>> parse_date("2022-05-01").isoformat()
'2022-05-01T00:00:00+00:00'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from continuum.errors import UserError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TIMEFRAME = re.compile(r"(\d+)([smhdw])")


def timeframe_ms(tf: str, what: str = "timeframe") -> int:
    """Length of one bar in ms. ``what`` names the option or key in the error (``--timeframe``)."""
    m = _TIMEFRAME.fullmatch(tf or "")
    if not m or int(m.group(1)) == 0:
        raise UserError(f"{what} {tf!r} is not a timeframe with a fixed length (use e.g. 1m, 5m, 1h, 4h, 1d, 1w)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def is_timeframe(tf: str) -> bool:
    return bool(_TIMEFRAME.fullmatch(tf or "")) and int(tf[:-1]) > 0


def parse_date(s: str | None, what: str = "date") -> datetime | None:
    """ISO date or datetime, as UTC (a naive value is UTC). ``None``/empty -> ``None``; anything else: one line."""
    if s is None or s == "":
        return None
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise UserError(f"{what} {s!r} is not an ISO date (e.g. 2022-05-01 or 2022-05-01T12:00)") from None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def to_ms(d: datetime) -> int:
    """A datetime as UTC epoch milliseconds (the unit of every ``ts`` in events, panels and the lake)."""
    return int(d.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def date_ms(s: str | None, what: str = "date") -> int | None:
    """:func:`parse_date` straight to epoch ms (``None`` stays ``None``)."""
    d = parse_date(s, what)
    return None if d is None else to_ms(d)
