"""Market regimes (UTC) for reporting only: no model ever receives a regime label."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from continuum.errors import UserError


@dataclass(frozen=True)
class Regime:
    name: str
    start: datetime
    end: datetime  # exclusive

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start.isoformat(), "end": self.end.isoformat()}


def _d(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


# DESIGN §5. Each regime ends where the next begins.
DEFAULT_REGIMES = (
    Regime("2017 bull", _d("2017-01-01"), _d("2017-12-17")),
    Regime("2018 bear", _d("2017-12-17"), _d("2018-12-15")),
    Regime("2019 recovery", _d("2018-12-15"), _d("2019-06-26")),
    Regime("2019-20 chop + COVID", _d("2019-06-26"), _d("2020-03-31")),
    Regime("2020-21 bull", _d("2020-03-31"), _d("2021-11-10")),
    Regime("2022 bear", _d("2021-11-10"), _d("2022-12-31")),
    Regime("2023-24 recovery", _d("2022-12-31"), _d("2024-07-01")),
)


def load_regimes(path: str | Path | None) -> tuple[Regime, ...]:
    """DEFAULT_REGIMES, or a JSON file ``[{"name", "start", "end"}, ...]`` (ISO dates, UTC)."""
    if path is None:
        return DEFAULT_REGIMES
    p = Path(path)
    if not p.is_file():
        raise UserError(f"regimes file {p} does not exist")
    try:
        rows = json.loads(p.read_text())
        out = tuple(Regime(r["name"], _d(r["start"]), _d(r["end"])) for r in rows)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{p}: expected a JSON list of {{name, start, end}} with ISO dates ({e})") from None
    for a, b in zip(out, out[1:], strict=False):
        if b.start < a.end:
            raise UserError(f"{p}: regimes {a.name!r} and {b.name!r} overlap")
    if any(r.end <= r.start for r in out):
        raise UserError(f"{p}: every regime must end after it starts")
    return out
