"""A/B of the memories' code in one process: ``learner/hope/memory.py`` at a git revision against the working tree's.

    python bench/hope_memory_ab.py c5d1af1                    # 8 streams, calls of 1, 8 and 24
    python bench/hope_memory_ab.py HEAD~1 --streams 512 --calls 24 --blocks 60

One Hope streams random bars; its 24-bar blocks alternate between the two versions of the memory functions that
``learner.hope.titans`` calls (read, factors, write), so both see the same load, caches and state; each block's
process CPU time counts for its version, and the 10th / 25th / 50th percentiles are printed per version. Other jobs
on the machine slow whole runs by 5-10%, more than the small changes this is for, which is why it interleaves
(``bench/hope_throughput.py`` runs each form separately). The old version's module is loaded from ``git show``;
only the memory module is swapped, so the revision must agree with the working tree everywhere else. Measures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from learner.features import feature_names
from learner.hope import memory, titans
from learner.hope.config import HopeConfig
from learner.hope.online import Hope
from learner.protocol import realised_window
from learner.stream import HORIZON_TUPLE

SWAPPED = ("mem_apply", "self_target_factors", "dgd_momentum_chunk", "memory_precision", "MemoryState")


def load_revision(rev: str):
    src = subprocess.run(
        ["git", "show", f"{rev}:learner/hope/memory.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "memory_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("memory_at_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ab(old, B: int, call: int, blocks: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    cfg = HopeConfig(n_features=len(feature_names()))
    hope = Hope(cfg)
    hope.reset(B)
    total = 24 * (blocks + 2)
    x = torch.randn(B, total, cfg.n_features)
    m = torch.ones(B, total, dtype=torch.bool)
    y = torch.randn(B, total, 3).abs()
    valid = torch.ones(total, B, 3, dtype=torch.bool)
    res: dict[str, list[float]] = {"old": [], "new": []}
    for blk, s0 in enumerate(range(0, total, 24)):
        which = "new" if blk % 2 else "old"
        for name in SWAPPED:
            setattr(titans, name, getattr(memory if which == "new" else old, name))
        t0 = time.process_time()
        for s in range(s0, s0 + 24, call):
            e = s + call
            hope.predict(x[:, s:e], m[:, s:e])
            a, new = realised_window(s, e, HORIZON_TUPLE, valid)
            hope.learn(torch.arange(a, e), y[:, a:e], new)
        if blk >= 2:  # the first block of each version warms up
            res[which].append(time.process_time() - t0)
    for name in SWAPPED:
        setattr(titans, name, getattr(memory, name))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="git revision whose learner/hope/memory.py is the 'old' version")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--calls", default="1,8,24")
    ap.add_argument("--blocks", type=int, default=0, help="24-bar blocks per call length (default: by call length)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = load_revision(args.rev)
    print(f"{args.streams} streams, one thread, CPU ms per 24 bars: old = {args.rev}, new = working tree")
    for call in (int(c) for c in args.calls.split(",")):
        blocks = args.blocks or {1: 60}.get(call, 300)
        for which, v in ab(old, args.streams, call, blocks).items():
            v.sort()
            n = len(v)
            q = " ".join(f"p{int(p * 100)} {v[int(p * n)] * 1e3:.3f}" for p in (0.1, 0.25, 0.5))
            print(f"calls of {call:2d}, {which}: {q} (n={n})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
