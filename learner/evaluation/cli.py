"""``continuum evaluate``: Hope against the baselines over market regimes, on any freqtrade data dir."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from continuum.jsonsafe import jsonsafe

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
    p.add_argument("--data", default=None, help="freqtrade-style data dir (default: bundled Binance 1h)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--models", default=None, help="comma-separated models (default: all)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all in --data)")
    p.add_argument(
        "--pretrain-until", default="2018-12-15", help="pre-train/warm up before this date (default %(default)s)"
    )
    p.add_argument("--start", default=None, help="ignore bars before this date")
    p.add_argument("--end", default=None, help="ignore bars from this date on")
    p.add_argument("--regimes", default=None, help="JSON file [{name,start,end}] (default: DESIGN §5 regimes)")
    p.add_argument("--weeks-per-regime", type=int, default=2, help="held-out weeks per regime (default 2)")
    p.add_argument("--pretrain-steps", type=int, default=300, help="outer steps for Hope and neural baselines")
    p.add_argument(
        "--onchain",
        default=None,
        help="onchain context: a daily history dir (e.g. ../shared/data/onchain_daily) or 'lake'",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--device", default=None, help="cpu | cuda | auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, cfg) -> int:
    import numpy as np
    import polars as pl
    import torch
    from tqdm import tqdm

    from continuum.config import BUNDLED_DATA
    from continuum.errors import UserError
    from ingest.replay import load_panel, parse_date
    from learner.device import pick_device
    from learner.evaluation import report
    from learner.evaluation.harness import PretrainCache, evaluate_model, make_setup, summarise_run
    from learner.evaluation.regimes import load_regimes
    from learner.features import build_features
    from learner.hope.config import HopeConfig
    from learner.models import DEFAULT_MODELS, parse_spec, pretrain_key
    from learner.pretrain import PretrainConfig

    torch.set_num_threads(cfg.learner.threads)
    t_wall = time.perf_counter()
    specs = [s for s in _split_models(args.models)] if args.models else list(DEFAULT_MODELS)
    for s in specs:
        parse_spec(s)
    device = str(pick_device(args.device or cfg.learner.device))
    symbols = args.symbols.split(",") if args.symbols else None
    panel = load_panel(
        args.data or BUNDLED_DATA,
        symbols=symbols,
        start=parse_date(args.start, "--start"),
        end=parse_date(args.end, "--end"),
    )
    from learner.onchain import source_from_arg

    onchain = source_from_arg(args.onchain, cfg.lake.root, cfg.chain.chain)
    fp = build_features(panel, onchain=onchain)
    regimes = load_regimes(args.regimes)
    until = parse_date(args.pretrain_until, "--pretrain-until")
    setup = make_setup(
        fp, regimes, int(until.timestamp() * 1000), seed=args.seed, weeks_per_regime=args.weeks_per_regime
    )
    if setup.cut >= len(fp.times) - 24 * 14:
        raise UserError("--pretrain-until leaves less than two weeks to stream; pick an earlier date")
    if setup.cut < 24 * 30:
        raise UserError("--pretrain-until leaves less than a month of history to pre-train on; pick a later date")
    base = HopeConfig(n_features=fp.x.shape[2])
    cache = PretrainCache(setup, PretrainConfig(steps=args.pretrain_steps, seed=args.seed), progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc_models, bar_q, frames = {}, {}, []
    n_stream = len(fp.times) - setup.cut
    for spec in specs:
        bar = tqdm(total=n_stream, desc=f"{spec:>20}", unit="bar", disable=args.quiet, file=sys.stderr)
        run_ = evaluate_model(
            spec, setup, base, cache, progress=bar.update, pretrain_steps=args.pretrain_steps, device=device
        )
        bar.close()
        block, q, se = summarise_run(run_, setup)
        doc_models[spec] = block
        bar_q[spec] = q
        frames.append(pl.DataFrame({"ts": fp.times, "model": spec, "vol_24h_qlike": q, "ret_1h_se": se}))
        if spec == "hope" and run_.activity:
            act = {k: np.nanmean(v, axis=1) for k, v in run_.activity.items()}
            pl.DataFrame({"ts": fp.times, **act}).slice(setup.cut).write_parquet(out / "hope_activity.parquet")
    from learner.checkpoint import save_pretrained

    for i, (key, net) in enumerate(cache.nets.items()):  # meta-learned nets, reusable by `demo`/`learn`
        name = "hope_pretrained.pt" if key == pretrain_key(base) else f"pretrained_{i}.pt"  # configs inside
        save_pretrained(out / name, net, {"until": until.isoformat(), "symbols": panel.symbols})
    iso = [str(t.astype("datetime64[ms]")) + "Z" for t in (fp.times[0], fp.times[-1])]
    doc = {
        "data": {"symbols": panel.symbols, "start": iso[0], "end": iso[1], "pretrain_until": until.isoformat()},
        "regimes": [
            {**r.to_dict(), "in_pretraining": b <= setup.cut} for r, (_, b) in zip(regimes, setup.bounds, strict=True)
        ],
        "models": doc_models,
        "protocol": {
            "chunk": setup.chunk,
            "seed": args.seed,
            "held_out_weeks": {
                r.name: [str(fp.times[a].astype("datetime64[ms]")) for a, _ in w]
                for r, w in zip(regimes, setup.weeks, strict=True)
            },
            "features": fp.names,
            "hope_config": base.to_dict(),
            "pretrain_steps": args.pretrain_steps,
        },
    }
    doc = jsonsafe(doc)
    report.write_json(doc, out)
    pl.concat(frames).with_columns(
        pl.col("vol_24h_qlike").fill_nan(None), pl.col("ret_1h_se").fill_nan(None)
    ).write_parquet(out / "errors.parquet")
    report.write_plots(doc, fp.times, bar_q, out, setup.cut)
    command = (
        "continuum evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2
        else "continuum evaluate"
    )
    wall = time.perf_counter() - t_wall
    report.write_report(doc, out, command, wall)
    print(f"evaluated {len(specs)} models on {len(panel.symbols)} assets in {wall / 60:.1f} min -> {out}/report.md")
    for m, r in doc_models.items():
        c = r["cumulative"]
        print(
            f"  {m:>20}  vol QLIKE {c['vol_24h_qlike']:.4f}  ret1h MSE {c['ret_1h_mse'] * 1e8:.2f}bp²  "
            f"BWT {r['forgetting']['bwt'] if r['forgetting']['bwt'] is not None else float('nan'):+.4f}"
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
