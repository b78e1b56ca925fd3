"""Hope online throughput: stream-steps/s for many streams, chunked replay vs per-step, state size, and a
same-size GRU fine-tuned online as the reference. Measures; asserts nothing.

    python bench/hope_throughput.py                      # CPU, 8/64/512 streams, replay calls of 8 and 24 bars
    python bench/hope_throughput.py --device cuda --streams 512,4096,65536 --no-gru   # see bench/gpu.sh

A "stream-step" is one asset advancing one bar: predict, then learn the targets realised at that bar
(the full online step). The loop is ``learner.stream.run_stream``'s: calls of ``call`` bars aligned to
multiples of ``call``, after each call ``learn`` with exactly the targets realised while those bars closed
(``realised_window``), gathered on the host as run_stream does; only the copy of the forecasts to numpy is
left out. Per-step (live) is calls of 1 bar; a replay may call with up to one CMS period (24 bars: every
level's period is a multiple, and the 64-bar ring holds every target still due). Inputs are random
features of the real width; the work does not depend on values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from learner.baselines.neural import OnlineGRU
from learner.features import feature_names
from learner.hope.config import HopeConfig
from learner.hope.online import Hope
from learner.protocol import realised_window
from learner.stream import HORIZON_TUPLE

WARM = 24  # bars run before the clock starts: one CMS period, so every code path has run once


def state_bytes(model: Hope) -> int:
    """Bytes of one model's whole fast state as checkpointed (memories, CMS levels, ring, caches)."""
    st = model.state_dict()
    total = 0

    def walk(o):
        nonlocal total
        if isinstance(o, torch.Tensor):
            total += o.numel() * o.element_size()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for k in ("conv", "mems", "cms", "ring"):
        walk(st[k])
    return total


def run(model, B: int, bars: int, call: int, F: int, device: str) -> float:
    """Seconds for ``bars`` bars (after WARM bars of warm-up) in calls of ``call`` bars, learning after each."""
    total = WARM + bars
    x = torch.randn(B, total, F, device=device)
    m = torch.ones(B, total, dtype=torch.bool, device=device)
    y = torch.randn(B, total, 3).abs()  # targets come from the host, as in run_stream
    valid = torch.ones(total, B, 3, dtype=torch.bool)
    model.reset(B)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t0 = 0.0
    for s in range(0, total, call):
        if s == WARM:
            sync()
            t0 = time.perf_counter()
        e = s + call
        model.predict(x[:, s:e], m[:, s:e])
        a, new = realised_window(s, e, HORIZON_TUPLE, valid)
        model.learn(torch.arange(a, e), y[:, a:e], new)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="8,64,512")
    ap.add_argument("--bars", type=int, default=24 * 13, help="timed bars at <= 64 streams (a multiple of 24)")
    ap.add_argument("--calls", default="8,24", help="replay call lengths to time against per-step (calls of 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-gru", action="store_true", help="skip the online GRU reference")
    ap.add_argument("--out", default="bench/results/hope_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    F = len(feature_names())
    cfg = HopeConfig(n_features=F)
    calls = [int(c) for c in args.calls.split(",")]
    n_hope = sum(p.numel() for p in Hope(cfg).net.parameters())
    hidden = 8
    while sum(p.numel() for p in OnlineGRU(F, hidden=hidden + 1).net.parameters()) <= n_hope:
        hidden += 1
    rows = []
    for B in [int(s) for s in args.streams.split(",")]:
        bars = args.bars if B <= 64 else max(72, args.bars // 4 // 24 * 24)
        hope = Hope(cfg, device=args.device)
        row: dict = {"streams": B, "bars": bars}
        t_step = run(Hope(cfg, net=hope.net, device=args.device), B, bars, 1, F, args.device)
        row["hope_per_step_steps_per_s"] = B * bars / t_step
        for c in calls:
            t = run(hope, B, bars, c, F, args.device)
            row[f"hope_chunked{c}_steps_per_s"] = B * bars / t
            row[f"chunked{c}_speedup"] = t_step / t
        if not args.no_gru and not args.device.startswith("cuda"):
            t_gru = run(OnlineGRU(F, hidden=hidden), B, bars, 1, F, args.device)
            row["gru_online_steps_per_s"] = B * bars / t_gru
            row["hope_step_cost_vs_gru"] = t_step / t_gru
        row["state_bytes_per_stream"] = state_bytes(hope) / B
        rows.append(row)
        print(json.dumps(row))
    doc = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "hope_params": n_hope,
        "gru_hidden": hidden,
        "gru_params": sum(p.numel() for p in OnlineGRU(F, hidden=hidden).net.parameters()),
        "chunk": cfg.chunk_other,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
