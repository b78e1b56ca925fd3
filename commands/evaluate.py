"""``continuum evaluate``: Hope against the baselines over market regimes, on any freqtrade data dir.

The protocol is :mod:`learner.evaluation.harness`; the run and its outputs :mod:`learner.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from commands.options import add_history_options, add_run_options, load_history, split_list
from continuum.config import Config

EPILOG = """\
examples:
  continuum evaluate --out out/eval                                  # bundled data, every model, ~1 h
  continuum evaluate --out out/quick --symbols BTC/USDT,ETH/USDT --models hope,har,gru_online --end 2020-06-01
  continuum evaluate --data ~/ft/user_data/data/binance --out out/mine --regimes my_regimes.json
  continuum evaluate --out out/abl --models 'hope,hope[levels=1],hope[no-dgd],hope[opt=momentum]'
  continuum evaluate --out out/attr --models 'hope,hope[no-writes],hope[no-cms-online],hope-frozen' --seeds 3
  continuum evaluate --out out/new --new-assets SOL/USDT --pretrain-until 2021-06-01   # SOL listed at the cut

models: hope, hope-no-cms, hope-frozen, ewma, har, garch, river_linear, gru_online, transformer_online,
gru_sliding; Hope variants take [opt=..., no-dgd, no-momentum, no-selfmod, levels=N, lowest-period=P, chunk=C]
and, for attribution (same pre-trained net as hope), [no-writes] (memories never write, CMS levels still step
online) or [no-cms-online] (memories write, CMS levels never step online); hope-frozen is both.

--seeds N runs every learning model (Hope variants, neural baselines) N times, seeds --seed, --seed+1, ...;
the held-out weeks stay those of --seed; ewma, har, garch and river_linear are deterministic and run once.
Cost grows about N-fold: report.md's cost table says where the time went.

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
        "--seeds",
        type=int,
        default=1,
        help="runs per learning model, seeds --seed, --seed+1, ...; report mean ± std (default 1)",
    )
    p.add_argument(
        "--new-assets",
        default=None,
        metavar="SYM,...",
        help="symbols listed at the cut: kept out of pre-training, fits and warm-up, scored on their "
        "first 30 and 90 days",
    )
    p.add_argument(
        "--onchain",
        default=None,
        help="onchain context: a daily history dir (same layout as the onchain_daily data set) or 'lake'",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    import torch

    from continuum.errors import UserError
    from continuum.timeframes import parse_date, to_ms
    from learner.device import pick_device
    from learner.evaluation.evaluate import run_evaluation
    from learner.evaluation.harness import listed_at_cut, make_setup
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
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: at least 1")
    new_assets = split_list(args.new_assets) or []
    device = str(pick_device(cfg.learner.device))
    panel = load_history(args)
    until = parse_date(args.pretrain_until, "--pretrain-until")
    if new_assets:  # listed at the cut: their earlier bars are gone before any feature is built
        panel = listed_at_cut(panel, new_assets, to_ms(until))
    fp = build_features(panel, onchain=source_from_arg(args.onchain, cfg.lake.root, cfg.chain.chain))
    regimes = load_regimes(args.regimes)
    setup = make_setup(
        fp, regimes, to_ms(until), seed=args.seed, weeks_per_regime=args.weeks_per_regime, new_assets=new_assets
    )
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
        seeds=args.seeds,
        started=t_wall,
    )
    wall = time.perf_counter() - t_wall
    runs = sum(r["seeds"]["n"] for r in doc["models"].values())
    print(
        f"evaluated {len(specs)} models ({runs} runs, {args.seeds} seed{'s' * (args.seeds > 1)}) on "
        f"{len(panel.symbols)} assets in {wall / 60:.1f} min ({wall:.0f} s) -> {args.out}"
    )
    for m, r in doc["models"].items():
        print(f"  {m:>20}  {_summary_line(r, args.seeds > 1)}")
    if new_assets:
        print(f"  new assets {', '.join(new_assets)}: vol QLIKE over their first 30 / 90 days")
        for m, r in doc["models"].items():
            sd = r["seeds"].get("new_assets") if args.seeds > 1 else None
            cells = [
                _pm(sd[w]["vol_24h_qlike"], 1, "{:.4f}") if sd else _num(r["new_assets"][w]["vol_24h_qlike"])
                for w in ("first_30d", "first_90d")
            ]
            print(f"  {m:>20}  {cells[0]} / {cells[1]}")
    return 0


def _num(v: float | None, scale: float = 1.0, f: str = "{:.4f}") -> str:
    return "–" if v is None else f.format(v * scale)


def _pm(st: dict, scale: float, f: str) -> str:
    """``mean ± std`` of a seeds entry; the value alone for a single run."""
    if st["mean"] is None:
        return "–"
    if sum(v is not None for v in st["values"]) < 2:
        return _num(st["mean"], scale, f)
    return f"{_num(st['mean'], scale, f)} ± {_num(st['std'], scale, f)}"


def _summary_line(r: dict, multi: bool) -> str:
    """vol QLIKE, ret 1h MSE, BWT (mean ± std over seeds when there are several), and where the time went."""
    if multi:
        sd = r["seeds"]
        q = _pm(sd["cumulative"]["vol_24h_qlike"], 1, "{:.4f}")
        mse = _pm(sd["cumulative"]["ret_1h_mse"], 1e8, "{:.2f}")
        bwt = _pm(sd["forgetting"]["bwt"], 1, "{:+.4f}")
    else:
        q = _num(r["cumulative"]["vol_24h_qlike"])
        mse = _num(r["cumulative"]["ret_1h_mse"], 1e8, "{:.2f}")
        bwt = _num(r["forgetting"]["bwt"], 1, "{:+.4f}")
    n = r["seeds"]["n"]
    cost = f"fit {r['fit_seconds']:.0f}s stream {r['stream_seconds']:.0f}s score {r['score_seconds']:.0f}s" + (
        f" (x{n} runs: {r['seeds']['total_seconds']:.0f}s)" if n > 1 else ""
    )
    return f"vol QLIKE {q}  ret1h MSE {mse}bp²  BWT {bwt}  [{cost}]"


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
