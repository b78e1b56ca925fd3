"""Choose Hope's pre-training recipe on the validation split, never on a test period (issue 12).

Protocol (docs/results.md, "Validation protocol"): the bundled history only; pre-train (and warm up) on bars
before 2022-07-01; stream 2022-07-01 -> 2024-06-30 prequentially with the held-out weeks of
`continuum evaluate` (seed 7, 2 weeks per regime); score cumulative vol-24h QLIKE, return MSE and
forgetting. Each recipe is pre-trained once per seed; the same net then runs as

    hope                 writes on, CMS steps on (as deployed)
    hope-frozen          writes off, CMS steps off
    hope[no-writes]      writes off, CMS steps on
    hope[no-cms-online]  writes on, CMS steps off

so the online parts are attributed on the same meta-weights. Memory health over the stream is recorded from
Hope's activity: the main memory's weight norm, surprise, and the share of writes the per-token clamp cut.

    python bench/validate_hope.py --recipe long --seeds 0,1,2 --out bench/results/validation_hope

Prints one line per (recipe, seed, variant) and writes one JSON per (recipe, seed).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from continuum.timeframes import parse_date, to_ms
from ingest.replay import load_panel
from learner.evaluation import metrics as M
from learner.evaluation.harness import evaluate_model, make_setup, summarise_run
from learner.evaluation.regimes import DEFAULT_REGIMES
from learner.features import build_features
from learner.hope.config import HopeConfig
from learner.pretrain import PretrainConfig, pretrain
from learner.protocol import to_raw
from learner.stream import masked, release_mask

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("hope", "hope-frozen", "hope[no-writes]", "hope[no-cms-online]")
HEALTH = ("mem_weight_norm", "surprise", "mem_clip_frac", "mem_update_norm", "eta", "alpha")
HEALTH += ("ret_calib_1h", "ret_calib_24h")  # the return calibration's multiples (hope[ret-calib])

# recipe -> (HopeConfig changes, PretrainConfig changes), each spelled out in full so a recipe keeps its meaning
# when the defaults move ("chosen" is today's default; "gates" the same with learned gate ranges; "landed" the first
# landing's).
_LANDED_H = {
    "anchor_memories": False,
    "norm_values": False,
    "stopgrad_vhat": True,
    "learn_cms_lr": False,
    "cms_lr": (1e-3, 3e-4, 1e-4),
    "learn_gate_range": False,
    "ret_calib": False,  # online only: measured as the variant hope[ret-calib] on the same nets
}
_HEALTH_H = {"anchor_memories": True, "norm_values": True, "stopgrad_vhat": False, "learn_cms_lr": True}
_LANDED_P = {"carry": 1, "weighted": False, "gate_range_lr_mult": 1.0}
_LONG_P = {"carry": 24, "weighted": True, "gate_range_lr_mult": 1.0}
RECIPES: dict[str, tuple[dict, dict]] = {
    "landed": (_LANDED_H, _LANDED_P),
    "long": (_LANDED_H, _LONG_P),
    "health": ({**_LANDED_H, **_HEALTH_H}, _LANDED_P),
    "long-health": ({**_LANDED_H, **_HEALTH_H}, _LONG_P),
    "chosen": ({**_LANDED_H, **_HEALTH_H, "cms_lr": (3e-4, 1e-4, 3e-5)}, _LONG_P),
    # chosen + meta-learned gate ranges at a 10x outer rate (the return calibration stays a variant)
    "gates": (
        {**_LANDED_H, **_HEALTH_H, "cms_lr": (3e-4, 1e-4, 3e-5), "learn_gate_range": True},
        {**_LONG_P, "gate_range_lr_mult": 10.0},
    ),
}


class _Shipped:
    """The pre-training cache interface for one net already pre-trained here (every variant gets a copy)."""

    seconds = 0.0

    def __init__(self, net):
        self.net = net

    def __call__(self, _cfg):
        return copy.deepcopy(self.net)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help=f"one of {', '.join(RECIPES)}, or name=JSON of HopeConfig")
    ap.add_argument("--seeds", default="0", help="pre-training seeds, comma-separated")
    ap.add_argument("--symbols", default=None, help="default: all bundled")
    ap.add_argument("--until", default="2022-07-01", help="validation cut (default %(default)s)")
    ap.add_argument("--end", default="2024-07-01")
    ap.add_argument("--steps", type=int, default=300, help="outer pre-training steps")
    ap.add_argument("--extra", default="{}", help="JSON of HopeConfig changes on top of the recipe")
    ap.add_argument("--pextra", default="{}", help="JSON of PretrainConfig changes on top of the recipe")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--baselines", default="", help="also run these (e.g. gru_online,har), seeded like Hope")
    ap.add_argument("--out", default=str(REPO / "bench/results/validation_hope"))
    ap.add_argument("--name", default=None, help="JSON file stem (default: the recipe, plus a hash of the changes)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    hchg, pchg = RECIPES[args.recipe]
    hchg, pchg = {**hchg, **json.loads(args.extra)}, {**pchg, **json.loads(args.pextra)}
    symbols = args.symbols.split(",") if args.symbols else None
    panel = load_panel(REPO / "data/binance", symbols=symbols, end=parse_date(args.end))
    fp = build_features(panel)
    setup = make_setup(fp, DEFAULT_REGIMES, to_ms(parse_date(args.until)), seed=7, weeks_per_regime=2)
    base = HopeConfig(n_features=fp.x.shape[2]).with_(**hchg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.recipe + ("" if args.extra == "{}" and args.pextra == "{}" else "+" + args.extra + args.pextra)
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        pcfg = PretrainConfig(steps=args.steps, seed=seed, **pchg)
        variants = [v for v in args.variants.split(",") if v]
        net, losses = (
            pretrain(base, masked(fp, setup.skip), setup.cut, pcfg, progress=False) if variants else (None, [0.0])
        )
        t_pre = time.perf_counter() - t0
        doc = {
            "recipe": tag,
            "hope_config": base.to_dict(),
            "pretrain": vars(pcfg),
            "seed": seed,
            "symbols": fp.symbols,
            "pretrain_seconds": t_pre,
            "loss_first_last": [losses[0], float(np.mean(losses[-20:]))],
            "models": {},
        }
        if net is not None and hasattr(net.cms, "log_lr"):
            doc["cms_lr_learned"] = [net.cms.lr(i).item() for i in range(len(base.cms_periods))]
        if net is not None and base.learn_gate_range:
            eta_max, alpha_min = net.titans.gate_range()
            doc["gate_range_learned"] = {"eta_max": eta_max.item(), "alpha_min": alpha_min.item()}
        specs = variants + [b for b in args.baselines.split(",") if b]
        for spec in specs:
            # activity (health) is recorded for "hope"; baselines are fitted and seeded by the harness
            run = evaluate_model(spec, setup, base, _Shipped(net), seed=seed)
            block, _, _ = summarise_run(run, setup)
            health = {}
            for k in HEALTH:
                if k in run.activity:
                    v = run.activity[k][setup.cut :]
                    per_month = [float(np.nanmean(v[i : i + 720])) for i in range(0, len(v), 720)]
                    health[k] = {"mean": float(np.nanmean(v)), "max_month": max(per_month), "last_month": per_month[-1]}
                    if k.startswith("ret_calib"):  # the calibration's path, and how often it sat at the zero forecast
                        live = setup.fp.mask[setup.cut :] & ~setup.skip[setup.cut :, None]  # streamed bars only
                        health[k] |= {"per_month": per_month, "zero_share": float(np.mean(v[live] == 0))}
            c = block["cumulative"]
            doc["models"][spec] = {"cumulative": c, "forgetting": block["forgetting"], "health": health}
            if "zero_forecast" not in doc:  # the returns' zero forecast on the same scored bars (issue 12)
                doc["zero_forecast"] = _zero_forecast(run.preds, setup)
            print(
                f"{tag:>14} seed {seed} {spec:>20}: vol QLIKE {c['vol_24h_qlike']:.4f}  "
                f"ret1h MSE {c['ret_1h_mse'] * 1e8:.1f}  ret24h MSE {c['ret_24h_mse'] * 1e8:.1f}  "
                f"avg forgetting {block['forgetting']['avg_forgetting']}  "
                + "  ".join(f"{k}={v['mean']:.3g}/{v['max_month']:.3g}" for k, v in health.items()),
                flush=True,
            )
        stem = args.name or f"{args.recipe}{'' if tag == args.recipe else '_' + str(abs(hash(tag)) % 10**6)}"
        name = f"{stem}_seed{seed}.json"
        (out / name).write_text(json.dumps(doc, indent=1, default=float))


def _zero_forecast(preds: np.ndarray, setup) -> dict:
    """ret_1h_mse and ret_24h_mse of the zero return forecast on the bars ``preds`` (T,B,3) was scored on."""
    fp = setup.fp
    ok = release_mask(fp, setup.skip) & np.isfinite(preds)
    ok[: setup.cut] = False
    zero = np.nan_to_num(preds).copy()
    zero[..., :2] = 0.0
    errs = M.per_bar(to_raw(zero, fp.sigma), fp.y, ok)
    rows = np.zeros(len(fp.times), dtype=bool)
    rows[setup.cut :] = True
    c = M.summarise(errs, M.rank_ic(zero[..., 1], fp.y[..., 1], ok[..., 1]), rows)
    return {k: c[k] for k in ("ret_1h_mse", "ret_24h_mse")}


if __name__ == "__main__":
    main()
