"""``continuum backtest``: strategies driven by the online learner's forecasts, over market regimes.

The learner runs exactly as it would have run live: pre-trained (or warmed up) on bars before
``--pretrain-until``, then streamed prequentially from there (``learner.stream.run_stream``: predict
after each close, learn each target only once realised). Or forecasts saved earlier are read back with
``--signals`` (the ``signals.parquet`` a previous run wrote, or a lake's ``kind=signal`` folder), so fees
and sizing can be varied without re-running the model.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

from commands.options import add_history_options, add_run_options, load_history, split_list
from continuum.config import Config
from continuum.errors import UserError

EPILOG = """\
examples:
  continuum backtest --out out/bt                                   # bundled data, Hope, all 8 assets
  continuum backtest --out out/bt2 --symbols BTC/USDT,ETH/USDT --start 2019-01-01 --end 2021-01-01 \\
      --pretrain-until 2019-07-01 --model hope --pretrain-steps 100
  continuum backtest --out out/fees20 --signals out/bt/signals.parquet --fee-bps 20 --slippage-bps 5
  continuum backtest --out out/v12 --signals out/bt/signals.parquet --trials 12   # 12 variants tried so far
  continuum backtest --data ~/ft/user_data/data/binance --out out/mine --model har
  continuum backtest --out out/impact --signals out/bt/signals.parquet --impact-k 0.7 --capital 5e7

strategies (all start at the first forecast; weights are fractions of equity, at most 1/B per asset):
  buy_and_hold      equal weight at the first bar, never rebalanced (the benchmark)
  vol_target_long   long only, sized min(1, 2% / forecast daily vol) / B: uses only the variance forecast
  signal_tanh       long/short tanh(10 mu24 / sigma24) x that size: direction from the 24h return forecast
  signal_sign       long/short sign(mu24) x that size
 cost-aware (strategies/portfolio.py; they weigh the same costs the backtest charges):
  tranche_tanh      signal_tanh's size in 24 hourly sub-books, each re-set once a day (daily horizon)
  mv_band           long/short mean-variance on 0.1 x mu24 (the forecast shrunk toward 0) over var24;
                    no trade unless the expected gain of the trade beats its cost (a no-trade region)
  mv_band_long      the same, long only
  mv_partial        long/short: each hour trade 1/168 of the gap to the mean-variance aim
                    (Garleanu-Pedersen partial adjustment); the rule the signal feed publishes
  mv_partial_long   the same, long only

assumptions: fills at the close of the bar the forecast was made after, held to the next close; fees
and slippage are bps of traded notional; impact (--impact-k) adds k x daily vol x sqrt(traded notional /
ADV) per unit, ADV being the asset's average daily traded value over the 30 days to the bar and the
book's notional --capital x equity; trades under --rebalance-band are skipped by the first four rules;
no trading on missing bars; no funding or borrow costs.
measures (backtest.json, per strategy in total and per regime): return, CAGR, Sharpe, Sortino, Calmar,
max drawdown, turnover, costs; PSR (probability the true Sharpe is above 0), DSR (the same against what
the best of --trials skill-less variants would show by luck) and a bootstrap 95% interval on Sharpe.
Annualised figures and PSR/DSR are left out (null, "—") for a stretch under 30 days.

outputs in --out: backtest.json, equity.parquet, signals.parquet, report.md, equity.png, tearsheet.png
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default="hope", help="online model driving the strategies (default %(default)s)")
    add_history_options(p)
    add_run_options(p, "pre-train/warm up before this date; trading starts here")
    p.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of traded notional (default 10)")
    p.add_argument("--slippage-bps", type=float, default=2.0, help="slippage per unit traded (default 2)")
    p.add_argument(
        "--impact-k",
        type=float,
        default=0.0,
        help="square-root impact: a trade of notional q pays k x daily vol x sqrt(q / ADV) per unit "
        "(default %(default)s: fees and slippage only; 0.5-1 is typical)",
    )
    p.add_argument(
        "--capital",
        type=float,
        default=1_000_000.0,
        help="starting notional of the book in the quote currency, which sizes impact (default %(default).0f)",
    )
    p.add_argument(
        "--rebalance-band",
        type=float,
        default=0.02,
        help="skip per-asset trades smaller than this weight, as a desk would (default %(default)s; 0 = every bar)",
    )
    p.add_argument("--signals", default=None, help="saved forecasts (parquet file or folder) instead of a model run")
    p.add_argument("--signals-model", default=None, help="which model's rows to use when --signals holds several")
    p.add_argument("--strategies", default=None, help="comma-separated subset of the strategies (default: all)")
    p.add_argument("--regimes", default=None, help="JSON file [{name,start,end}] (default: DESIGN §5 regimes)")
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        default=None,
        help="how many strategy variants you tried in all, for the deflated Sharpe ratio: count every variant "
        "you tried, also in earlier runs (other models, parameters, fees, periods); default: the strategies "
        "in this run",
    )
    p.add_argument(
        "--trials-sharpe-std",
        type=float,
        metavar="S",
        default=None,
        help="standard deviation of the annualised Sharpe ratios of all the variants counted in --trials (the V "
        "of the deflated Sharpe ratio); default: measured across the strategies in this run",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    import json

    import torch

    from continuum.jsonsafe import jsonsafe
    from continuum.timeframes import parse_date
    from learner.evaluation.regimes import load_regimes
    from learner.features import build_features
    from strategies import report, tearsheet
    from strategies.backtest import backtest_from_preds
    from strategies.positions import STRATEGIES

    torch.set_num_threads(cfg.learner.threads)
    t_wall = time.perf_counter()
    for name, v in (("--fee-bps", args.fee_bps), ("--slippage-bps", args.slippage_bps)):
        if not 0 <= v < 10_000:
            raise UserError(f"{name} must be within 0..10000 (basis points), got {v}")
    if not 0 <= args.impact_k <= 10:
        raise UserError(f"--impact-k must be within 0..10 (0.5-1 is typical), got {args.impact_k}")
    if not args.capital > 0 or not math.isfinite(args.capital):
        raise UserError(f"--capital must be a positive amount of the quote currency, got {args.capital}")
    if not 0 <= args.rebalance_band < 1:
        raise UserError("--rebalance-band must be within 0..1 (a weight, e.g. 0.02)")
    if args.trials_sharpe_std is not None and not 0 <= args.trials_sharpe_std < 100:
        raise UserError(f"--trials-sharpe-std must be within 0..100 (annualised Sharpe), got {args.trials_sharpe_std}")
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials must be at least 1 (the number of variants tried), got {args.trials}")
    strategies = split_list(args.strategies) or list(STRATEGIES)
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy {s!r}; known: {', '.join(STRATEGIES)}")
    panel = load_history(args)
    fp = build_features(panel)
    regimes = load_regimes(args.regimes)
    if args.signals:
        preds, model = preds_from_signals(args.signals, fp, args.signals_model)
        source = f"forecasts read from {args.signals}"
    else:
        until = parse_date(args.pretrain_until, "--pretrain-until")
        preds, model_seconds = stream_model(args, cfg, fp)
        model = args.model
        source = (
            f"{args.model} pre-trained/warmed up before {until.date()}, then streamed prequentially "
            f"({model_seconds:.0f} s)"
        )
    try:
        doc, equity = backtest_from_preds(
            fp,
            preds,
            regimes,
            args.fee_bps,
            args.slippage_bps,
            band=args.rebalance_band,
            strategies=strategies,
            impact_k=args.impact_k,
            capital=args.capital,
            trials=args.trials,
            trials_sharpe_std=args.trials_sharpe_std,
        )
    except ValueError as e:
        raise UserError(f"backtest: {e}") from None
    doc["model"] = model
    doc["source"] = source
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = jsonsafe(doc)
    (out / "backtest.json").write_text(json.dumps(doc, indent=2))
    equity.write_parquet(out / "equity.parquet")
    if not args.signals:
        from learner.signals import signals_frame
        from strategies.costs import CostModel
        from strategies.positions import feed_weights

        costs = CostModel(args.fee_bps, args.slippage_bps, args.impact_k, args.capital)
        weights = feed_weights(fp, preds, costs)  # each signal's target weight, as the live feed gives it
        frame = signals_frame(model, "binance", fp.symbols, fp.times, preds, fp.sigma, fp.mask, weights=weights)
        frame.write_parquet(out / "signals.parquet")
    title = f"{model}: {', '.join(fp.symbols)}"
    report.write_plot(equity, regimes, out / "equity.png", title=title)
    tearsheet.write_tearsheet(doc, equity, regimes, out / "tearsheet.png", title=title)
    command = "continuum backtest " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    wall = time.perf_counter() - t_wall
    text = report.write_report(doc, out / "report.md", command, wall)
    print(text)
    print(f"backtest of {len(strategies)} strategies on {len(fp.symbols)} assets in {wall:.0f} s -> {out}/report.md")
    return 0


def stream_model(args: argparse.Namespace, cfg: Config, fp) -> tuple:
    """Run ``args.model`` as it would have run live; forecasts (T, B, 3) are NaN before the cut."""
    from tqdm import tqdm

    from continuum.timeframes import date_ms
    from learner.device import pick_device
    from learner.models import parse_spec
    from learner.pipeline import PretrainCache, check_cut, cut_index, stream_from_cut
    from learner.pretrain import PretrainConfig

    parse_spec(args.model)
    device = str(pick_device(cfg.learner.device))
    chunk = 8
    cut = cut_index(fp.times, date_ms(args.pretrain_until, "--pretrain-until"), chunk)
    check_cut(cut, len(fp.times), "--pretrain-until")
    pcfg = PretrainConfig(steps=args.pretrain_steps, seed=args.seed)
    cache = PretrainCache(fp, cut, pcfg, progress=not args.quiet, device=device)
    t0 = time.perf_counter()
    bar = tqdm(total=len(fp.times) - cut, desc=f"{args.model} stream", unit="bar", disable=args.quiet, file=sys.stderr)
    res = stream_from_cut(
        args.model,
        fp,
        cut,
        cache,
        chunk=chunk,
        device=device,
        pretrain_steps=args.pretrain_steps,
        on_chunk=lambda a, b, _p: bar.update(b - a),
        seed=args.seed,
    )
    bar.close()
    return res.preds, time.perf_counter() - t0


def preds_from_signals(path: str, fp, model: str | None):
    """Forecasts (T, B, 3) in volatility units from saved signals (a parquet file or a lake folder), and the
    model's name (:func:`learner.signals.preds_from_frame` does the conversion)."""
    import numpy as np
    import polars as pl

    from continuum.files import read_parquet
    from learner.signals import preds_from_frame

    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
    elif p.is_file():
        files = [str(p)]
    else:
        files = []
    if not files:
        raise UserError(f"--signals {path}: no parquet file there")
    df = pl.concat([read_parquet(f) for f in files], how="diagonal_relaxed")
    need = {"symbol", "ts", "ret_1h", "ret_24h", "vol_24h"}
    if not need <= set(df.columns):
        raise UserError(f"--signals {path}: needs columns {', '.join(sorted(need))}; has {', '.join(df.columns)}")
    if "model" in df.columns:
        models = df["model"].unique().sort().to_list()
        if model is None and len(models) > 1:
            raise UserError(f"--signals {path} holds models {', '.join(models)}; choose one with --signals-model")
        if model is not None:
            if model not in models:
                raise UserError(f"--signals-model {model}: not in {path} (has {', '.join(models)})")
            df = df.filter(pl.col("model") == model)
    name = model or (df["model"][0] if "model" in df.columns and df.height else "signals")
    preds = preds_from_frame(df, fp.symbols, fp.times, fp.sigma)
    if not np.isfinite(preds).any():
        raise UserError(f"--signals {path}: no forecast falls on the bars of --data for {', '.join(fp.symbols)}")
    return preds, name
