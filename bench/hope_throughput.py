"""Hope online throughput: stream-steps/s for many streams, chunked replay vs per-step, state size, a same-size
GRU fine-tuned online as the reference, and (optionally) pre-training steps/s. Measures; asserts nothing.

    python bench/hope_throughput.py                      # CPU, one thread, 8/64/512 streams
    python bench/hope_throughput.py --device cuda --streams 512,4096,16384,65536 --no-gru --pretrain-steps 30
    bash bench/gpu.sh                                    # the second line, as one table (issue 14)

A "stream-step" is one asset advancing one bar: predict, then learn the targets realised at that bar (the full
online step). The loop is ``learner.stream.run_stream``'s: calls of ``call`` bars aligned to multiples of
``call``, after each call ``learn`` with exactly the targets realised while those bars closed
(``realised_window``), built on the host as run_stream builds them; only run_stream's copy of the forecasts
to numpy is left out. Per-step (live) is calls of 1 bar. A replay may call with up to one CMS period (24
bars: every level's period is a multiple of 24, and the 64-bar ring still holds every target due), which is
``run_stream(..., chunk=24)``; calls of 8 (one memory chunk) are timed too. Inputs are random features of the
real width; the work does not depend on values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from learner.baselines.neural import OnlineGRU
from learner.features import FeaturePanel, feature_names
from learner.hope.config import HopeConfig
from learner.hope.online import Hope
from learner.pretrain import PretrainConfig, pretrain
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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(model, B: int, bars: int, call: int, F: int, device: str, clock=time.perf_counter) -> float:
    """Seconds for ``bars`` bars (after WARM bars of warm-up) in calls of ``call`` bars, learning after each."""
    total = WARM + bars
    x = torch.randn(B, total, F, device=device)
    m = torch.ones(B, total, dtype=torch.bool, device=device)
    y = torch.randn(B, total, 3).abs()  # targets come from the host, as in run_stream
    valid = torch.ones(total, B, 3, dtype=torch.bool)
    model.reset(B)
    t0 = 0.0
    for s in range(0, total, call):
        if s == WARM:
            _sync(device)
            t0 = clock()
        e = s + call
        model.predict(x[:, s:e], m[:, s:e])
        a, new = realised_window(s, e, HORIZON_TUPLE, valid)
        model.learn(torch.arange(a, e), y[:, a:e], new)
    _sync(device)
    return clock() - t0


def titans_pytorch_run(B: int, bars: int, call: int, dim: int, device: str, clock=time.perf_counter) -> float:
    """Seconds for lucidrains' titans-pytorch ``NeuralMemory`` (one memory, no CMS, no supervised step; its
    parallel associative scan, chunk 8) to replay ``bars`` bars in calls of ``call`` with its state carried:
    the public anchor of issue 14, timed like :func:`run`."""
    from titans_pytorch import NeuralMemory

    mem = NeuralMemory(dim=dim, chunk_size=8).to(device)
    x = torch.randn(B, WARM + bars, dim, device=device)
    state, t0 = None, 0.0
    with torch.no_grad():
        for s in range(0, WARM + bars, call):
            if s == WARM:
                _sync(device)
                t0 = clock()
            _, state = mem(x[:, s : s + call], state=state)
    _sync(device)
    return clock() - t0


def random_panel(T: int, B: int, F: int, seed: int = 0) -> FeaturePanel:
    """Random features and targets of the real shapes (pre-training's work does not depend on values)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.standard_normal((T, B, 2)), 24 * np.exp(0.3 * rng.standard_normal((T, B, 1)))], -1)
    return FeaturePanel(
        symbols=[f"S{i}/USDT" for i in range(B)],
        times=(np.arange(T, dtype=np.int64) + 420_000) * 3_600_000,
        names=[f"f{i}" for i in range(F)],
        x=rng.standard_normal((T, B, F)).astype(np.float32),
        mask=np.ones((T, B), dtype=bool),
        sigma=np.ones((T, B)),
        y=y,
        ymask=np.ones((T, B, 3), dtype=bool),
        close=np.ones((T, B)),
    )


def pretrain_rate(cfg: HopeConfig, steps: int, device: str, compile: bool = False) -> dict:
    """Outer steps/s of ``learner.pretrain`` with its default sizes (16 streams x 192-bar windows, carried 24x)."""
    pcfg = PretrainConfig(steps=steps, compile=compile)
    T = pcfg.carry * pcfg.seq_len + 200
    fp = random_panel(T, 8, cfg.n_features)
    pretrain(cfg, fp, T - 30, PretrainConfig(steps=1, compile=compile), progress=False, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    pretrain(cfg, fp, T - 30, pcfg, progress=False, device=device)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"steps": steps, "steps_per_s": steps / dt, "seconds_for_300": 300 * dt / steps}


def table(doc: dict) -> str:
    calls = doc["calls"]
    head = ["streams", "per-step /s"] + [f"chunked {c} /s" for c in calls] + [f"× ({c})" for c in calls]
    head += ["state / stream", "peak device mem / stream"]
    lines = [
        f"device: {doc['device_name']} ({doc['device']}, torch {doc['torch']}, {doc['threads']} host thread(s), "
        f"{doc['clock']} clock, "
        f"memories {doc['mem_precision']}{', compiled write' if doc['compile'] else ''})",
        "",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        cells = [f"{r['streams']:,}", f"{r['hope_per_step_steps_per_s']:,.0f}"]
        cells += [f"{r[f'hope_chunked{c}_steps_per_s']:,.0f}" for c in calls]
        cells += [f"{r[f'chunked{c}_speedup']:.1f}×" for c in calls]
        peak = r.get("peak_device_bytes_per_stream")
        cells += [f"{r['state_bytes_per_stream'] / 1e3:.0f} kB", "—" if peak is None else f"{peak / 1e3:.0f} kB"]
        lines.append("| " + " | ".join(cells) + " |")
    for r in doc["rows"]:
        tp = [
            f"calls of {c}: {r[f'titans_pytorch_chunked{c}_steps_per_s']:,.0f} /s"
            for c in calls
            if f"titans_pytorch_chunked{c}_steps_per_s" in r
        ]
        if tp:
            lines.append(
                f"titans-pytorch NeuralMemory (d={doc.get('width', 32)}), {r['streams']:,} streams: " + ", ".join(tp)
            )
    if doc.get("pretrain"):
        p = doc["pretrain"]
        lines += [
            "",
            f"pre-training: {p['steps_per_s']:.2f} steps/s ({p['steps']} steps timed; 300 steps in "
            f"{p['seconds_for_300']:.0f} s), 16 streams x 192 bars per step",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="8,64,512")
    ap.add_argument("--bars", type=int, default=24 * 13, help="timed bars at <= 64 streams (a multiple of 24)")
    ap.add_argument("--big-bars", type=int, default=72, help="timed bars above 64 streams (a multiple of 24)")
    ap.add_argument("--calls", default="8,24", help="replay call lengths timed against per-step (calls of 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time (one thread; what other jobs on the machine cannot inflate)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each form, interleaved; the best counts")
    ap.add_argument("--no-gru", action="store_true", help="skip the online GRU reference")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="also time this many pre-training steps")
    ap.add_argument("--precision", default="fp32", help="HopeConfig.mem_precision: fp32, bf16 or tf32")
    ap.add_argument("--compile", action="store_true", help="the memories' write through torch.compile")
    ap.add_argument(
        "--titans-pytorch",
        action="store_true",
        help="also time titans-pytorch's NeuralMemory (same width, streams, calls; pip install titans-pytorch)",
    )
    ap.add_argument("--out", default="bench/results/hope_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu" and (args.threads != 1 or args.device != "cpu"):
        ap.error("--clock cpu measures one CPU thread: use it with --device cpu --threads 1")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    F = len(feature_names())
    cfg = HopeConfig(n_features=F, mem_precision=args.precision)
    calls = [int(c) for c in args.calls.split(",")]
    n_hope = sum(p.numel() for p in Hope(cfg).net.parameters())
    hidden = 8
    while sum(p.numel() for p in OnlineGRU(F, hidden=hidden + 1).net.parameters()) <= n_hope:
        hidden += 1
    small = Hope(cfg)
    small.reset(2)
    per_stream = state_bytes(small) / 2  # the state grows linearly with the streams
    cuda = args.device.startswith("cuda")
    rows = []
    for B in [int(s) for s in args.streams.split(",")]:
        bars = args.bars if B <= 64 else args.big_bars
        hope = Hope(cfg, device=args.device, compile=args.compile)
        row: dict = {"streams": B, "bars": bars}
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        live = Hope(cfg, net=hope.net, device=args.device)
        best = {c: float("inf") for c in [1, *calls]}
        try:
            for _ in range(args.repeat):  # interleaved, best of each: other jobs slow runs down, never speed them up
                for c in best:
                    best[c] = min(best[c], run(live if c == 1 else hope, B, bars, c, F, args.device, clock))
        except torch.OutOfMemoryError:
            print(json.dumps({"streams": B, "error": "out of device memory"}), flush=True)
            del hope, live
            torch.cuda.empty_cache()
            continue
        t_step = best[1]
        row["hope_per_step_steps_per_s"] = B * bars / t_step
        for c in calls:
            row[f"hope_chunked{c}_steps_per_s"] = B * bars / best[c]
            row[f"chunked{c}_speedup"] = t_step / best[c]
        if cuda:
            row["peak_device_bytes_per_stream"] = torch.cuda.max_memory_allocated() / B
        if args.titans_pytorch:
            for c in calls:
                t = min(titans_pytorch_run(B, bars, c, cfg.d_model, args.device, clock) for _ in range(args.repeat))
                row[f"titans_pytorch_chunked{c}_steps_per_s"] = B * bars / t
        if not args.no_gru and not cuda:
            t_gru = run(OnlineGRU(F, hidden=hidden), B, bars, 1, F, args.device, clock)
            row["gru_online_steps_per_s"] = B * bars / t_gru
            row["hope_step_cost_vs_gru"] = t_step / t_gru
        row["state_bytes_per_stream"] = per_stream
        rows.append(row)
        print(json.dumps(row), flush=True)
        del hope, live
        if cuda:
            torch.cuda.empty_cache()
    doc = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if cuda else cpu_name(),
        "threads": args.threads,
        "repeat": args.repeat,
        "clock": args.clock,
        "torch": torch.__version__,
        "mem_precision": args.precision,
        "compile": args.compile,
        "hope_params": n_hope,
        "gru_hidden": hidden,
        "gru_params": sum(p.numel() for p in OnlineGRU(F, hidden=hidden).net.parameters()),
        "chunk": cfg.chunk_other,
        "width": cfg.d_model,
        "calls": calls,
        "rows": rows,
    }
    if args.pretrain_steps:
        doc["pretrain"] = pretrain_rate(cfg, args.pretrain_steps, args.device, args.compile)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(table(doc))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
