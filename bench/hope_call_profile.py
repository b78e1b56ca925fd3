"""Where one Hope call's time goes: inclusive CPU time of each stage per 24 bars, calls of 1 (per-step), 8 and 24.

    python bench/hope_call_profile.py                    # 8 streams, one thread
    python bench/hope_call_profile.py --streams 512 --calls 1,24

The stages are wrapped (a timer around each function, the same loop as ``bench/hope_throughput.py``'s ``run``),
so nested rows are included in their parents: ``write`` = ``factors`` + ``chunk write``; ``memory chunk`` holds
both and the read; ``predict`` holds ``encode`` and the readout; ``learn`` holds ``cms accumulate`` (which
holds its own readout) and ``cms apply``. Work that only chunked calls do is the difference between a
column and per-step's, per 24 bars divided by the bars per call (issue 14, docs/results.md). Measures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from learner.features import feature_names
from learner.hope import memory, model, online, titans
from learner.hope.config import HopeConfig
from learner.protocol import realised_window
from learner.stream import HORIZON_TUPLE

STAGES = (  # (owner, attribute, label), outermost first
    (online.Hope, "predict", "predict"),
    (model.HopeNet, "encode", "encode"),
    (titans.SelfModifyingTitans, "forward", "memories (conv, query, chunks)"),
    (titans.SelfModifyingTitans, "_chunk", "memory chunk"),
    (titans, "mem_apply", "read + generate"),
    (titans, "self_target_factors", "factors"),
    (titans, "dgd_momentum_chunk", "chunk write"),
    (model.HopeNet, "readout", "readout (CMS + head)"),
    (online.Hope, "learn", "learn"),
    (model.HopeNet, "cms_accumulate", "cms accumulate"),
    (model.HopeNet, "cms_apply_due", "cms apply"),
)


def wrap(totals: dict[str, float], clock) -> None:
    for owner, name, label in STAGES:
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*a, _f=f, _label=label, **k):
            t0 = clock()
            out = _f(*a, **k)
            totals[_label] = totals.get(_label, 0.0) + clock() - t0
            return out

        setattr(owner, name, timed)
    assert titans.dgd_momentum_chunk is not memory.dgd_momentum_chunk  # the write is reached through titans


def profile(B: int, call: int, bars: int, totals: dict[str, float]) -> None:
    torch.manual_seed(0)
    cfg = HopeConfig(n_features=len(feature_names()))
    hope = online.Hope(cfg)
    hope.reset(B)
    warm = 48
    total = warm + bars
    x = torch.randn(B, total, cfg.n_features)
    m = torch.ones(B, total, dtype=torch.bool)
    y = torch.randn(B, total, 3).abs()
    valid = torch.ones(total, B, 3, dtype=torch.bool)
    for s in range(0, total, call):
        if s == warm:
            totals.clear()
        e = s + call
        hope.predict(x[:, s:e], m[:, s:e])
        a, new = realised_window(s, e, HORIZON_TUPLE, valid)
        hope.learn(torch.arange(a, e), y[:, a:e], new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--calls", default="1,8,24")
    ap.add_argument("--bars", type=int, default=24 * 40, help="timed bars per call length (a multiple of 24)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    totals: dict[str, float] = {}
    wrap(totals, time.process_time)
    calls = [int(c) for c in args.calls.split(",")]
    cols = {}
    for c in calls:
        profile(args.streams, c, args.bars, totals)
        cols[c] = {k: v * 24 / args.bars * 1e3 for k, v in totals.items()}
    print(f"{args.streams} streams, one thread, CPU ms per 24 bars (inclusive)")
    print(f"| stage | {' | '.join(f'calls of {c}' for c in calls)} |")
    print("|---" * (len(calls) + 1) + "|")
    for _, _, label in STAGES:
        print(f"| {label} | {' | '.join(f'{cols[c].get(label, 0.0):.3f}' for c in calls)} |")
    steps = {c: cols[c]["predict"] + cols[c]["learn"] for c in calls}
    print(f"| predict + learn | {' | '.join(f'{v:.3f}' for v in steps.values())} |")
    if 1 in steps:
        print("ratio to per-step: " + ", ".join(f"calls of {c}: {steps[1] / v:.1f}x" for c, v in steps.items()))


if __name__ == "__main__":
    main()
