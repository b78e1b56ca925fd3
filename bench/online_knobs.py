"""How much can online learning gain on the validation split? Online-only knobs on one pre-trained net (issue 12).

The chosen recipe is pre-trained once per seed on bars before 2022-07-01 (cached in ``--cache``); each variant
then streams 2022-07-01 -> 2024-06-30 with the *same* meta-weights under a HopeConfig change that only acts
online (CMS step sizes, write gate range, online loss weights, level optimizer). Variants are ``spec=JSON``:

    python bench/online_knobs.py --seed 0 'hope-frozen' 'hope' 'hope={"cms_lr":[1e-4,3e-5,1e-5]}'

``--bounds`` adds two upper bounds computed on hope-frozen's forecasts, with each target used only once it is
released (24 bars after the forecast): the hindsight-best constant rescaling of the variance forecast against
its online (EWMA) tracking, and the hindsight-best shrinkage of the return forecast against an online one.
Prints one line per variant; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_hope import RECIPES, REPO, _Shipped  # noqa: E402

from continuum.timeframes import parse_date, to_ms  # noqa: E402
from ingest.replay import load_panel  # noqa: E402
from learner.evaluation.harness import evaluate_model, make_setup, summarise_run  # noqa: E402
from learner.evaluation.metrics import qlike  # noqa: E402
from learner.evaluation.regimes import DEFAULT_REGIMES  # noqa: E402
from learner.features import build_features  # noqa: E402
from learner.hope.config import HopeConfig  # noqa: E402
from learner.pretrain import PretrainConfig, pretrain  # noqa: E402
from learner.protocol import to_raw  # noqa: E402
from learner.stream import masked  # noqa: E402


def ewma_released(x: np.ndarray, cut: int, lag: int, half_life: float) -> np.ndarray:
    """(T, B) EWMA of x (NaN = no observation) as known at each bar: row t sees rows <= t - lag only."""
    T, B = x.shape
    lam = 0.5 ** (1.0 / half_life)
    s, w = np.zeros(B), np.zeros(B)
    out = np.full((T, B), np.nan)
    for t in range(cut, T):
        if t - lag >= cut:
            v = x[t - lag]
            m = np.isfinite(v)
            s = np.where(m, lam * s + (1 - lam) * np.nan_to_num(v), s)
            w = np.where(m, lam * w + (1 - lam), w)
        out[t] = np.where(w > 0.05, s / np.maximum(w, 1e-12), np.nan)
    return out


def bounds(preds: np.ndarray, fp, setup) -> None:
    """Print the calibration and shrinkage bounds for one model's forecasts."""
    raw = to_raw(np.nan_to_num(preds), fp.sigma)
    ok = fp.ymask & np.isfinite(preds) & ~setup.skip[:, None, None]
    ok[: setup.cut] = False
    v, rv, okv = raw[..., 2], fp.y[..., 2], ok[..., 2]
    base = qlike(rv, v)[okv].mean()
    best = min((qlike(rv, v * c)[okv].mean(), c) for c in np.arange(0.7, 1.41, 0.05))
    print(f"variance: forecast {base:.4f}; hindsight-best constant x{best[1]:.2f}: {best[0]:.4f}")
    ratio = np.where(okv, rv / v, np.nan)
    for hl_days in (7, 30, 90):
        for pooled in (False, True):
            x = np.repeat(np.nanmean(ratio, 1, keepdims=True), ratio.shape[1], 1) if pooled else ratio
            c = np.nan_to_num(ewma_released(x, setup.cut, 24, 24 * hl_days), nan=1.0)
            q = qlike(rv, v * c)[okv].mean()
            print(f"  online EWMA of realised/forecast, {hl_days}d, {'pooled' if pooled else 'per asset'}: {q:.4f}")
    for k, h in ((0, 1), (1, 24)):
        f, y, okr = raw[..., k], fp.y[..., k], ok[..., k]
        s = (f[okr] * y[okr]).sum() / (f[okr] ** 2).sum()
        num = ewma_released(np.where(okr, f * y, np.nan).mean(1, keepdims=True), setup.cut, h, 24 * 90)
        den = ewma_released(np.where(okr, f * f, np.nan).mean(1, keepdims=True), setup.cut, h, 24 * 90)
        shr = np.clip(np.nan_to_num(num / den), 0, 1)
        mse = {
            "zero": (y[okr] ** 2).mean(),
            "forecast": ((f - y)[okr] ** 2).mean(),
            f"hindsight x{s:.2f}": ((s * f - y)[okr] ** 2).mean(),
            "online shrink": ((shr * f - y)[okr] ** 2).mean(),
        }
        print(f"return {h}h MSE (bp^2): " + "  ".join(f"{n} {m * 1e8:.1f}" for n, m in mse.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help='spec or spec=JSON of HopeConfig changes, e.g. hope={"eta_max":0.1}')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path.home() / ".cache/continuum/online_knobs"))
    ap.add_argument("--bounds", action="store_true", help="also print the calibration / shrinkage bounds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    panel = load_panel(REPO / "data/binance", end=parse_date("2024-07-01"))
    fp = build_features(panel)
    setup = make_setup(fp, DEFAULT_REGIMES, to_ms(parse_date("2022-07-01")), seed=7, weeks_per_regime=2)
    hchg, pchg = RECIPES["chosen"]
    base = HopeConfig(n_features=fp.x.shape[2]).with_(**hchg)
    path = Path(args.cache) / f"chosen_seed{args.seed}.pt"
    if path.exists():
        net = torch.load(path, weights_only=False)
    else:
        t0 = time.perf_counter()
        net, _ = pretrain(base, masked(fp, setup.skip), setup.cut, PretrainConfig(steps=300, seed=args.seed, **pchg))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net, path)
        print(f"pre-trained seed {args.seed} in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    for line in args.variants:
        spec, _, js = line.partition("=")
        chg = {k: tuple(v) if isinstance(v, list) else v for k, v in (json.loads(js) if js else {}).items()}
        t0 = time.perf_counter()
        run = evaluate_model(spec, setup, base.with_(**chg), _Shipped(net), seed=args.seed)
        block, _, _ = summarise_run(run, setup)
        c = block["cumulative"]
        print(
            f"seed {args.seed} {line:60s} vol QLIKE {c['vol_24h_qlike']:.4f}  ret1h MSE {c['ret_1h_mse'] * 1e8:.1f}  "
            f"avg forgetting {block['forgetting']['avg_forgetting']:+.4f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if args.bounds and spec == "hope-frozen":
            bounds(run.preds, fp, setup)


if __name__ == "__main__":
    main()
