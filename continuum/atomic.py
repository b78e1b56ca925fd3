"""Replace a file atomically: write beside it, then rename over it, so a reader or a crash never sees half a file.

One mechanism for the lake's partitions, checkpoints and the alerter's state: the temporary file lives in the
target's directory (a rename is atomic only within one file system) and is hidden (``.name.*.tmp``), so folder
scans (the lake's ``*.parquet``, the scheduler's retention) never pick it up; on an error it is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_atomically(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on a clean exit it replaces ``path``.

    ``fsync``: flush the new content to disk before the rename, so after a power loss the file is either the
    old or the new one (checkpoints, delivery journals); the lake's partitions skip it (they are rebuilt from
    the bus on a replay).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
