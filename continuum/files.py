"""Reading a table file the user named (``--data``, ``--signals``): one clear line when it cannot be read.

A truncated download, a file of another format under a ``.parquet`` name, or a half-written copy make
polars (or pyarrow below it) raise one of several exception types with several lines of detail. Here
every such failure becomes one :class:`continuum.errors.UserError` that names the file, e.g.
``data/x/BTC_USDT-1h.parquet: not a readable Parquet file (file out of specification: ...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from continuum.errors import UserError


def short_reason(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when it has none), at most ``limit`` chars."""
    text = str(e).strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        return type(e).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def read_parquet(path: str | Path) -> Any:
    """A Parquet file as a polars DataFrame, or a UserError naming the file (truncated, another format)."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except Exception as e:  # polars raises ComputeError/OSError/... by cause; all mean "not readable"
        raise UserError(f"{path}: not a readable Parquet file ({short_reason(e)})") from None


def read_feather(path: str | Path) -> Any:
    """A Feather (Arrow IPC) file as a polars DataFrame, or a UserError naming the file."""
    import polars as pl

    try:
        return pl.read_ipc(path)
    except Exception as e:  # same as above: any failure to decode the file is the file's fault
        raise UserError(f"{path}: not a readable Feather file ({short_reason(e)})") from None
