"""Noisy-gradient robustness of momentum as a memory (the shape of NL arXiv Fig. 4 / eq. 53).

A d-dimensional quadratic whose curvature changes over time, seen through heavy-tailed gradient noise::

    L_t(w) = 1/2 sum_i lam_{t,i} (w_i - w*_i)^2,   lam_t = a permutation of lam (log-spaced, condition 100),
             re-drawn every ``switch`` steps (the curvature moves between axes);
    g_t    = grad L_t(w_t) + sigma * xi_t,          xi_t ~ Student-t with nu = 1.5 (infinite variance).

Two conditions: the heavy-tailed one above (``--sigma``, ``--target``) and a noise-free control (sigma = 0,
``--target-clean``, tight enough that the run lives through several curvature switches), which separates what
the time-varying curvature does from what the noise does.

Score: iterations until the distance loss ``|w - w*|^2 / |w_0 - w*|^2`` stays below ``target`` for 20
consecutive steps (``max_iters`` when never: censored, counted in the ``reached`` fraction). Every optimizer
gets its learning rate picked from one grid on separate tuning seeds (median iterations), then is scored on
``--seeds`` fresh seeds. The optimizers are learner.optim's (momentum, delta-rule momentum, deep momentum,
M3) and torch's Adam, all through their ``torch.optim`` form.

    python bench/noisy_quadratic.py [--seeds 20] [--dim 20]

Writes bench/results/noisy_quadratic.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner.optim import M3, DeepMomentum, DeltaMomentum, Momentum  # noqa: E402

OPTIMIZERS = {
    "momentum": lambda p, lr: Momentum(p, lr=lr, beta=0.9),
    "delta(lam=0.5)": lambda p, lr: DeltaMomentum(p, lr=lr, beta=0.9, lam=0.5),
    "delta(lam=0.9)": lambda p, lr: DeltaMomentum(p, lr=lr, beta=0.9, lam=0.9),
    "dmgd": lambda p, lr: DeepMomentum(p, lr=lr, alpha=0.9),
    "m3": lambda p, lr: M3(p, lr=lr),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
}
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


def run(name: str, lr: float, seed: int, sigma: float, target: float, a: argparse.Namespace) -> int:
    gen = np.random.default_rng(seed)
    lam = np.logspace(math.log10(0.05), math.log10(5.0), a.dim)
    w_star = torch.tensor(gen.normal(size=a.dim), dtype=torch.float32)
    w = torch.nn.Parameter(torch.tensor(gen.normal(size=a.dim), dtype=torch.float32))
    d0 = float((w.data - w_star).pow(2).sum())
    opt = OPTIMIZERS[name]([w], lr)
    noise = torch.tensor(gen.standard_t(1.5, size=(a.max_iters, a.dim)) * sigma, dtype=torch.float32)
    below = 0
    cur = None
    for t in range(a.max_iters):
        if t % a.switch == 0:
            cur = torch.tensor(gen.permutation(lam), dtype=torch.float32)
        w.grad = cur * (w.data - w_star) + noise[t]
        opt.step()
        dist = float((w.data - w_star).pow(2).sum()) / d0
        if not math.isfinite(dist):
            return a.max_iters
        below = below + 1 if dist < target else 0
        if below == 20:
            return t - 19
    return a.max_iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--tune-seeds", type=int, default=5)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--sigma", type=float, default=0.3)
    p.add_argument("--switch", type=int, default=50)
    p.add_argument("--target", type=float, default=0.05)
    p.add_argument("--target-clean", type=float, default=1e-4)
    p.add_argument("--max-iters", type=int, default=3000)
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = {"config": vars(a), "lr_grid": LR_GRID, "conditions": {}}
    conditions = (
        (f"student-t(1.5) noise, sigma={a.sigma}, target {a.target}", a.sigma, a.target),
        (f"noise-free, target {a.target_clean}", 0.0, a.target_clean),
    )
    for cond, sigma, target in conditions:
        res_c = out["conditions"][cond] = {}
        print(cond, flush=True)
        for name in OPTIMIZERS:
            tune_seeds = range(1000, 1000 + a.tune_seeds)
            tune = {lr: float(np.median([run(name, lr, s, sigma, target, a) for s in tune_seeds])) for lr in LR_GRID}
            lr = min(tune, key=lambda k: (tune[k], k))
            its = [run(name, lr, s, sigma, target, a) for s in range(a.seeds)]
            res = {
                "lr": lr,
                "tuning_median_iters": tune,
                "iters": its,
                "median": float(np.median(its)),
                "q25": float(np.percentile(its, 25)),
                "q75": float(np.percentile(its, 75)),
                "mean": float(np.mean(its)),
                "reached": float(np.mean([i < a.max_iters for i in its])),
            }
            res_c[name] = res
            print(f"  {name:16s} lr={lr:<6} median {res['median']:7.0f}  IQR [{res['q25']:.0f}, {res['q75']:.0f}]  "
                  f"reached {res['reached']:.0%}", flush=True)  # fmt: skip
    out["wall_s"] = time.perf_counter() - t0
    out["machine"] = platform.platform()
    dest = ROOT / "bench" / "results" / "noisy_quadratic.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest} in {out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
