"""Device choice: CPU here, CUDA when present. No tensor in the learner assumes the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

from continuum.errors import UserError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


def keep_freed_host_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    Why: every call of the learner allocates its new state (one tensor per memory layer, 10 MB each at 512
    streams) and frees the previous one. By default glibc serves such blocks with mmap and returns them on
    free (or trims the heap top), so each new tensor is paid again in page faults: on one CPU thread that
    was up to half of a per-step call at 512 streams (docs/results.md, "Hope online throughput"). Blocks up
    to 32 MB (glibc's ceiling for the mmap threshold) then come from the heap, which is never trimmed; the
    process keeps its peak memory. A process-wide setting, so only entry points call it (the benchmarks).
    Returns False where it does not apply (not glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
