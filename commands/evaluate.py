"""``continuum evaluate``: Hope against the baselines over market regimes, on any freqtrade data dir.

The protocol is :mod:`learner.evaluation.harness`; the run and its outputs :mod:`learner.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from commands.options import add_history_options, add_run_options, load_history
from continuum.config import Config

EPILOG = """\
examples:
  continuum evaluate --out out/eval                                  # bundled data, every model, ~1 h
  continuum evaluate --out out/quick --symbols BTC/USDT,ETH/USDT --models hope,har,gru_online --end 2020-06-01
  continuum evaluate --data ~/ft/user_data/data/binance --out out/mine --regimes my_regimes.json
  continuum evaluate --out out/abl --models 'hope,hope[levels=1],hope[no-dgd],hope[opt=momentum]'

models: hope, hope-no-cms, hope-frozen, ewma, har, garch, river_linear, gru_online, transformer_online,
gru_sliding; Hope variants take [opt=..., no-dgd, no-momentum, no-selfmod, levels=N, lowest-period=P, chunk=C].

outputs in --out: evaluation.json, report.md, errors.parquet, cumulative_error.png, forgetting_matrices.png,
per_regime.png, switches.png.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--models", default=None, help="comma-separated models (default: all)")
    add_history_options(p)
    add_run_options(p, "pre-train/warm up before this date")
    p.add_argument("--regimes", default=None, help="JSON file [{name,start,end}] (default: DESIGN §5 regimes)")
    p.add_argument("--weeks-per-regime", type=int, default=2, help="held-out weeks per regime (default 2)")
    p.add_argument(
        "--onchain",
        default=None,
        help="onchain context: a daily history dir (same layout as the onchain_daily data set) or 'lake'",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    import torch

    from continuum.timeframes import parse_date, to_ms
    from learner.device import pick_device
    from learner.evaluation.evaluate import run_evaluation
    from learner.evaluation.harness import make_setup
    from learner.evaluation.regimes import load_regimes
    from learner.features import build_features
    from learner.models import DEFAULT_MODELS, parse_spec
    from learner.onchain import source_from_arg
    from learner.pipeline import check_cut

    torch.set_num_threads(cfg.learner.threads)
    t_wall = time.perf_counter()
    specs = _split_models(args.models) if args.models else list(DEFAULT_MODELS)
    for s in specs:
        parse_spec(s)
    device = str(pick_device(cfg.learner.device))
    panel = load_history(args)
    fp = build_features(panel, onchain=source_from_arg(args.onchain, cfg.lake.root, cfg.chain.chain))
    regimes = load_regimes(args.regimes)
    until = parse_date(args.pretrain_until, "--pretrain-until")
    setup = make_setup(fp, regimes, to_ms(until), seed=args.seed, weeks_per_regime=args.weeks_per_regime)
    check_cut(setup.cut, len(fp.times), "--pretrain-until")
    command = "continuum evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else ""
    doc = run_evaluation(
        fp,
        setup,
        regimes,
        specs,
        until,
        Path(args.out),
        seed=args.seed,
        pretrain_steps=args.pretrain_steps,
        device=device,
        progress=not args.quiet,
        command=command.strip() or "continuum evaluate",
    )
    wall = time.perf_counter() - t_wall
    print(f"evaluated {len(specs)} models on {len(panel.symbols)} assets in {wall / 60:.1f} min -> {args.out}")
    for m, r in doc["models"].items():
        c = r["cumulative"]
        bwt = r["forgetting"]["bwt"]
        print(
            f"  {m:>20}  vol QLIKE {c['vol_24h_qlike']:.4f}  ret1h MSE {c['ret_1h_mse'] * 1e8:.2f}bp²  "
            f"BWT {bwt if bwt is not None else float('nan'):+.4f}"
        )
    return 0


def _split_models(s: str) -> list[str]:
    """Split on commas outside brackets: 'hope,hope[levels=1,no-dgd]' -> ['hope', 'hope[levels=1,no-dgd]']."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out
