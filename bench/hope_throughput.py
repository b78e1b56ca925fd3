"""Hope online throughput: stream-steps/s for many streams, chunked replay vs per-step, state size, and a
same-size GRU fine-tuned online as the reference. Measures; asserts nothing.

    python bench/hope_throughput.py                      # CPU, 8/64/512 streams
    python bench/hope_throughput.py --device cuda --streams 512,4096,16384   # see bench/gpu.sh

A "stream-step" is one asset advancing one bar: predict, then learn the targets realised at that bar
(the full online step). Inputs are random features of the real width; the work does not depend on values.
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


def _state_bytes(model: Hope) -> int:
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


def _run(model, B: int, bars: int, call: int, F: int, device: str) -> float:
    """Seconds for ``bars`` bars in calls of ``call`` bars, with the learn step after each call."""
    x = torch.randn(B, bars, F, device=device)
    m = torch.ones(B, bars, dtype=torch.bool, device=device)
    y = torch.randn(B, bars, 3, device=device).abs()
    model.reset(B)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # warm-up: one CMS period's worth so every code path has run once
    for s in range(0, 24, call):
        model.predict(x[:, s : s + call], m[:, s : s + call])
        model.learn(
            torch.arange(s, s + call), y[:, s : s + call], torch.ones(B, call, 3, dtype=torch.bool, device=device)
        )
    sync()
    t0 = time.perf_counter()
    for s in range(24, bars, call):
        model.predict(x[:, s : s + call], m[:, s : s + call])
        t = torch.arange(max(0, s - 24), s + call)
        new = torch.zeros(B, len(t), 3, dtype=torch.bool, device=device)
        new[:, -call:, 0] = True  # the 1h targets realised now
        new[:, :call, 1:] = True  # the 24h targets realised now
        model.learn(t, y[:, t], new)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="8,64,512")
    ap.add_argument("--bars", type=int, default=24 * 14)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/hope_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    F = len(feature_names())
    cfg = HopeConfig(n_features=F)
    n_hope = sum(p.numel() for p in Hope(cfg).net.parameters())
    hidden = 8
    while sum(p.numel() for p in OnlineGRU(F, hidden=hidden + 1).net.parameters()) <= n_hope:
        hidden += 1
    rows = []
    for B in [int(s) for s in args.streams.split(",")]:
        bars = args.bars if B <= 64 else max(96, args.bars // 4)
        hope = Hope(cfg, device=args.device)
        t_chunk = _run(hope, B, bars, cfg.chunk_other, F, args.device)
        t_step = _run(Hope(cfg, net=hope.net, device=args.device), B, bars, 1, F, args.device)
        gru = OnlineGRU(F, hidden=hidden)
        if args.device == "cuda":
            gru.net.cuda()
        t_gru = _run(gru, B, bars, 1, F, args.device) if args.device == "cpu" else None
        n = B * (bars - 24)
        row = {
            "streams": B,
            "bars": bars - 24,
            "hope_chunked_steps_per_s": n / t_chunk,
            "hope_per_step_steps_per_s": n / t_step,
            "chunked_speedup": t_step / t_chunk,
            "gru_online_steps_per_s": None if t_gru is None else n / t_gru,
            "hope_step_cost_vs_gru": None if t_gru is None else t_step / t_gru,
            "state_bytes_per_stream": _state_bytes(hope) / B,
        }
        rows.append(row)
        print(json.dumps(row))
    doc = {
        "device": args.device,
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
