"""``continuum backtest``: strategies driven by the online learner's forecasts, over market regimes.

The learner runs exactly as it would have run live: pre-trained (or warmed up) on bars before
``--pretrain-until``, then streamed prequentially from there (``learner.stream.run_stream``: predict
after each close, learn each target only once realised). Or forecasts saved earlier are read back with
``--signals`` (the ``signals.parquet`` a previous run wrote, or a lake's ``kind=signal`` folder), so fees
and sizing can be varied without re-running the model.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from continuum.jsonsafe import jsonsafe

EPILOG = """\
examples:
  continuum backtest --out out/bt                                   # bundled data, Hope, all 8 assets
  continuum backtest --out out/bt2 --symbols BTC/USDT,ETH/USDT --start 2019-01-01 --end 2021-01-01 \\
      --pretrain-until 2019-07-01 --model hope --pretrain-steps 100
  continuum backtest --out out/fees20 --signals out/bt/signals.parquet --fee-bps 20 --slippage-bps 5
  continuum backtest --data ~/ft/user_data/data/binance --out out/mine --model har

strategies (all start at the first forecast; weights are fractions of equity, at most 1/B per asset):
  buy_and_hold      equal weight at the first bar, never rebalanced (the benchmark)
  vol_target_long   long only, sized min(1, 2% / forecast daily vol) / B: uses only the variance forecast
  signal_tanh       long/short tanh(10 mu24 / sigma24) x that size: direction from the 24h return forecast
  signal_sign       long/short sign(mu24) x that size

assumptions: fills at the close of the bar the forecast was made after, held to the next close; fees
and slippage are bps of traded notional; trades under --rebalance-band are skipped; no trading on
missing bars; no funding or borrow costs.
outputs in --out: backtest.json, equity.parquet, signals.parquet, report.md, equity.png
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--data", default=None, help="freqtrade-style data dir (default: bundled Binance 1h)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default="hope", help="online model driving the strategies (default %(default)s)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all in --data)")
    p.add_argument("--start", default=None, help="ignore bars before this date")
    p.add_argument("--end", default=None, help="ignore bars from this date on")
    p.add_argument(
        "--pretrain-until",
        default="2018-12-15",
        help="pre-train/warm up before this date; trading starts here (default %(default)s)",
    )
    p.add_argument("--pretrain-steps", type=int, default=300, help="outer steps for Hope and neural baselines")
    p.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of traded notional (default 10)")
    p.add_argument("--slippage-bps", type=float, default=2.0, help="slippage per unit traded (default 2)")
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
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--device", default=None, help="cpu | cuda | auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, cfg) -> int:
    import json

    import torch

    from continuum.config import BUNDLED_DATA
    from continuum.errors import UserError
    from ingest.replay import load_panel, parse_date
    from learner.evaluation.regimes import load_regimes
    from learner.features import build_features
    from strategies import report
    from strategies.backtest import backtest_from_preds
    from strategies.positions import STRATEGIES

    torch.set_num_threads(cfg.learner.threads)
    t_wall = time.perf_counter()
    for name, v in (("--fee-bps", args.fee_bps), ("--slippage-bps", args.slippage_bps)):
        if not 0 <= v < 10_000:
            raise UserError(f"{name} must be within 0..10000 (basis points), got {v}")
    if not 0 <= args.rebalance_band < 1:
        raise UserError("--rebalance-band must be within 0..1 (a weight, e.g. 0.02)")
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else list(STRATEGIES)
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy {s!r}; known: {', '.join(STRATEGIES)}")
    symbols = args.symbols.split(",") if args.symbols else None
    panel = load_panel(
        args.data or BUNDLED_DATA,
        symbols=symbols,
        start=parse_date(args.start, "--start"),
        end=parse_date(args.end, "--end"),
    )
    fp = build_features(panel)
    regimes = load_regimes(args.regimes)
    if args.signals:
        preds, model = preds_from_signals(args.signals, fp, args.signals_model)
        source = f"forecasts read from {args.signals}"
    else:
        until = parse_date(args.pretrain_until, "--pretrain-until")
        preds, model_seconds = stream_model(args, cfg, fp, regimes, int(until.timestamp() * 1000))
        model = args.model
        source = (
            f"{args.model} pre-trained/warmed up before {until.date()}, then streamed prequentially "
            f"({model_seconds:.0f} s)"
        )
    try:
        doc, equity = backtest_from_preds(
            fp, preds, regimes, args.fee_bps, args.slippage_bps, band=args.rebalance_band, strategies=strategies
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

        signals_frame(model, "binance", fp.symbols, fp.times, preds, fp.sigma, fp.mask).write_parquet(
            out / "signals.parquet"
        )
    report.write_plot(equity, regimes, out / "equity.png", title=f"{model}: {', '.join(fp.symbols)}")
    command = "continuum backtest " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    wall = time.perf_counter() - t_wall
    text = report.write_report(doc, out / "report.md", command, wall)
    print(text)
    print(f"backtest of {len(strategies)} strategies on {len(fp.symbols)} assets in {wall:.0f} s -> {out}/report.md")
    return 0


def backtest_from_preds(fp, preds, regimes, fee_bps: float = 10.0, slippage_bps: float = 2.0, **kw):
    """:func:`strategies.backtest.backtest_from_preds`, importable from here without loading it at parse time."""
    from strategies.backtest import backtest_from_preds as impl

    return impl(fp, preds, regimes, fee_bps, slippage_bps, **kw)


def stream_model(args, cfg, fp, regimes, until_ms: int):
    """Run ``args.model`` as it would have run live; forecasts (T, B, 3) are NaN before the cut."""
    import numpy as np
    from tqdm import tqdm

    from continuum.errors import UserError
    from learner.device import pick_device
    from learner.evaluation.harness import WARMUP_NEURAL, PretrainCache, make_setup
    from learner.hope.config import HopeConfig
    from learner.models import build_model, parse_spec
    from learner.pretrain import PretrainConfig
    from learner.stream import run_stream

    parse_spec(args.model)
    device = str(pick_device(args.device or cfg.learner.device))
    setup = make_setup(fp, regimes, until_ms, seed=args.seed, weeks_per_regime=0)  # live: every bar streamed
    T, B, F = fp.x.shape
    if setup.cut >= T - 24 * 14:
        raise UserError("--pretrain-until leaves less than two weeks to trade; pick an earlier date")
    if setup.cut < 24 * 30:
        raise UserError("--pretrain-until leaves less than a month of history to pre-train on; pick a later date")
    base = HopeConfig(n_features=F)
    cache = PretrainCache(setup, PretrainConfig(steps=args.pretrain_steps, seed=args.seed), progress=not args.quiet)
    t0 = time.perf_counter()
    built = build_model(args.model, F, fp.names, base, cache, device=device, pretrain_steps=args.pretrain_steps)
    model = built.model
    cut = setup.cut
    if built.needs_history_fit:
        hist = fp.slice(0, cut)
        released = hist.ymask.copy()
        released[max(0, cut - 24) :] = False  # only targets realised before the cut
        model.fit_history(hist.x, hist.mask, hist.y_norm().astype(np.float32), released)
    model.reset(B)
    neural = args.model.startswith("hope") or built.needs_history_fit
    w0 = max(0, cut - WARMUP_NEURAL) if neural else 0
    w0 = cut - (cut - w0) // setup.chunk * setup.chunk
    run_stream(model, fp, start=w0, end=cut, chunk=setup.chunk, clock0=w0)
    bar = tqdm(total=T - cut, desc=f"{args.model} stream", unit="bar", disable=args.quiet, file=sys.stderr)
    res = run_stream(
        model, fp, start=cut, end=T, chunk=setup.chunk, clock0=w0, on_chunk=lambda a, b, _p: bar.update(b - a)
    )
    bar.close()
    preds = res.preds
    preds[:cut] = np.nan
    return preds, time.perf_counter() - t0


def preds_from_signals(path: str, fp, model: str | None):
    """Forecasts (T, B, 3) in volatility units from saved signals (symbol, ts, ret_1h, ret_24h, vol_24h), and
    the model's name.

    The raw forecasts are divided by the panel's own causal scale ``sigma`` at the same bar, so
    ``to_raw`` gives the saved numbers back exactly.
    """
    import numpy as np
    import polars as pl

    from continuum.errors import UserError

    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
    elif p.is_file():
        files = [str(p)]
    else:
        files = []
    if not files:
        raise UserError(f"--signals {path}: no parquet file there")
    df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
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
    col = {s: j for j, s in enumerate(fp.symbols)}
    df = df.filter(pl.col("symbol").is_in(list(col)))
    step = int(fp.times[1] - fp.times[0]) if len(fp.times) > 1 else 3_600_000
    t_idx = (df["ts"].to_numpy() - fp.times[0]) // step
    ok = (t_idx >= 0) & (t_idx < len(fp.times)) & (df["ts"].to_numpy() % step == fp.times[0] % step)
    if not ok.any():
        raise UserError(f"--signals {path}: no forecast falls on the bars of --data for {', '.join(fp.symbols)}")
    ti = t_idx[ok].astype(np.int64)
    bi = np.array([col[s] for s in df["symbol"].to_list()], dtype=np.int64)[ok]
    s = fp.sigma[ti, bi]
    preds = np.full((*fp.close.shape, 3), np.nan, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        preds[ti, bi, 0] = df["ret_1h"].to_numpy()[ok] / s
        preds[ti, bi, 1] = df["ret_24h"].to_numpy()[ok] / (s * 24**0.5)
        preds[ti, bi, 2] = np.log(df["vol_24h"].to_numpy()[ok] ** 2 / (24 * s**2))
    bad = ~np.isfinite(preds).all(-1)
    preds[bad] = np.nan
    return preds, name
