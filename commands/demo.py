"""``continuum demo``: the main job on the embedded default — bundled real history, no broker.

1. The bundled Binance 1h candles are replayed as ``Candle`` events through the embedded bus (the same
   bus interface Kafka sits behind) and assembled back into an aligned panel (gaps stay gaps).
2. Features -> Hope, online: the model predicts each bar, then learns each target once it is realised.
   Hope starts from the shipped meta-weights (``data/hope_pretrained.pt``, made by ``continuum pretrain``
   on bars before 2018-12-15) or is pre-trained here with ``--pretrain-steps N``.
3. Signals go to the bus topic ``signals`` and the lake; a backtest runs on them; a report and a plot
   are written; the dashboard can show all of it.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from commands.options import add_history_options, load_history
from continuum.config import BUNDLED_DATA, Config
from continuum.errors import UserError

if TYPE_CHECKING:
    from continuum.bus import EmbeddedBus
    from continuum.panel import Panel

EPILOG = """\
examples:
  continuum demo                                        # all 8 bundled assets, 2018-12 -> 2024-06 (~2-4 min)
  continuum demo --symbols BTC/USDT,ETH/USDT --start 2022-01-01
  continuum demo --pretrain-steps 300                   # meta-learn Hope here instead of the shipped weights
  continuum demo --model har                            # any model from `continuum evaluate --help`

then:  continuum dashboard --lake .continuum/lake --backtest-dir .continuum/demo --eval-dir .continuum/demo/eval
"""
PRETRAINED = "hope_pretrained.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    add_history_options(p, start_help="first bar to stream (ISO date; the 30 days before it warm the model up)")
    p.add_argument("--pretrain-until", default="2018-12-15", help="signals start here; earlier bars pre-train")
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=0,
        help="meta-learn Hope here with N outer steps (default 0: use the shipped pre-trained weights)",
    )
    p.add_argument("--model", default="hope", help="model to run (default hope)")
    p.add_argument("--out", default=".continuum/demo", help="report directory (default %(default)s)")
    p.add_argument("--fee-bps", type=float, default=10.0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, cfg: Config) -> int:
    import json
    import shutil
    import sys

    import torch
    from tqdm import tqdm

    from continuum.bus import EmbeddedBus
    from continuum.jsonsafe import jsonsafe
    from continuum.lake import Lake
    from continuum.timeframes import parse_date, to_ms
    from ingest.replay import replay_events
    from learner.checkpoint import load_pretrained
    from learner.evaluation.evaluate import streamed_evaluation
    from learner.evaluation.metrics import forecast_quality
    from learner.evaluation.regimes import DEFAULT_REGIMES
    from learner.evaluation.report import plot_forecasts, write_json
    from learner.features import build_features
    from learner.hope.config import HopeConfig
    from learner.models import parse_spec
    from learner.pipeline import cut_index, stream_from_cut
    from learner.pretrain import PretrainConfig, pretrain
    from learner.signals import frame_to_signals, signals_frame
    from strategies.backtest import backtest_from_preds
    from strategies.positions import feed_weights
    from strategies.report import table, write_plot
    from strategies.tearsheet import write_tearsheet

    torch.set_num_threads(cfg.learner.threads)
    parse_spec(args.model)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else BUNDLED_DATA
    start = parse_date(args.start, "--start")
    until = parse_date(args.pretrain_until, "--pretrain-until")

    # 1. replay the history as candle events through the embedded bus, and assemble them again
    # with --start, 30 days before it are loaded too: the model's memories warm up on them (no signals)
    source = load_history(args, before_start=timedelta(days=30))
    bus = EmbeddedBus(partitions=4)
    n_events = int(source.present.sum())
    with tqdm(total=n_events, desc="replay candles -> bus", unit="ev", disable=args.quiet) as bar:
        for i, ev in enumerate(replay_events(source)):
            bus.publish(ev)
            if i % 5000 == 0:
                bar.update(min(5000, n_events - bar.n))
        bar.update(n_events - bar.n)
    panel = _assemble(bus, source)
    fp = build_features(panel)
    chunk = 8
    cut = cut_index(fp.times, to_ms(max(until, start) if start is not None else until), chunk)
    if cut >= len(fp.times) - 48:
        raise UserError("nothing left to stream after --pretrain-until; pick an earlier date or a later --end")

    # 2. the model: shipped meta-weights, or pre-trained here
    base = HopeConfig(n_features=fp.x.shape[2])
    net_for = None
    if args.model.startswith("hope"):
        shipped = data.parent / PRETRAINED if not args.data else None
        if args.pretrain_steps > 0 or shipped is None or not shipped.is_file():
            if cut < 24 * 30:
                raise UserError("less than a month of history before --pretrain-until to pre-train on")
            steps = args.pretrain_steps or 150
            net, _ = pretrain(base, fp, cut, PretrainConfig(steps=steps), progress=not args.quiet)
        else:
            net, _meta = load_pretrained(shipped)
            if net.cfg.n_features != base.n_features:
                raise UserError(f"{shipped} was trained on other features; run with --pretrain-steps 150")
            base = net.cfg

        def net_for(_cfg, _net=net):
            return _net

    with tqdm(total=len(fp.times) - cut, desc=f"{args.model} online", unit="bar", disable=args.quiet) as bar:
        res = stream_from_cut(
            args.model,
            fp,
            cut,
            net_for,
            base=base,
            chunk=chunk,
            pretrain_steps=args.pretrain_steps or 300,  # neural baselines' fit
            on_chunk=lambda s, e, _p: bar.update(e - s),
            record_activity=True,
        )

    # 3. signals -> bus + lake; backtest; report
    lake = Lake(cfg.lake.root)
    weights = feed_weights(fp, res.preds)  # what each signal tells a desk to hold (docs/signals.md)
    sig = signals_frame(
        args.model, "binance", panel.symbols, fp.times, res.preds, fp.sigma, fp.mask, res.activity, weights
    )
    lake.append("signal", sig)
    latest = sig.sort("ts").group_by("symbol", maintain_order=True).tail(24)
    for s_ in frame_to_signals(latest):
        bus.publish(s_)
    doc, equity = backtest_from_preds(fp, res.preds, DEFAULT_REGIMES, fee_bps=args.fee_bps)
    (out / "backtest.json").write_text(json.dumps(jsonsafe(doc), indent=1))
    equity.write_parquet(out / "equity.parquet")
    write_plot(equity, DEFAULT_REGIMES, out / "equity.png", title=f"{args.model}: strategies on its online signals")
    write_tearsheet(doc, equity, DEFAULT_REGIMES, out / "tearsheet.png", title=f"{args.model}: online signals")
    quality = forecast_quality(fp, res.preds, cut)
    # what the dashboard's Evaluation tab reads: the same errors per regime and over time, beside the naive reference
    ev_doc, errors = streamed_evaluation(fp, res.preds, cut, DEFAULT_REGIMES, args.model, until, res.steps_per_s)
    (out / "eval").mkdir(exist_ok=True)
    write_json(ev_doc, out / "eval")
    errors.write_parquet(out / "eval" / "errors.parquet")
    plot_forecasts(fp, res.preds, res.activity, cut, out / "demo.png", args.model)
    wall = time.perf_counter() - t0
    report = _report(args, panel, fp, cut, quality, doc, table, wall, n_events, sig.height, res.steps_per_s)
    (out / "report.md").write_text(report)
    print(report)
    files = "report.md, demo.png, equity.png, tearsheet.png, backtest.json, eval/evaluation.json"
    print(f"\nwrote {out}/{files}; {sig.height:,} signals in {cfg.lake.root}")
    venv_exe = Path(sys.executable).parent / "continuum"  # ./run demo does not put .venv/bin on PATH
    exe = "continuum" if shutil.which("continuum") or not venv_exe.exists() else str(venv_exe)
    print(f"open the dashboard:  {exe} dashboard --lake {cfg.lake.root} --backtest-dir {out} --eval-dir {out / 'eval'}")
    return 0


def _assemble(bus: EmbeddedBus, source: Panel) -> Panel:
    """Candles consumed from the bus back onto the grid of the replayed panel (gaps stay NaN)."""
    import numpy as np

    from continuum.panel import OHLCV, Panel
    from continuum.schema import Candle

    T, B = source.close.shape
    ohlcv = np.full((len(OHLCV), T, B), np.nan)
    col = {s: j for j, s in enumerate(source.symbols)}
    step = int(source.times[1] - source.times[0]) if T > 1 else 3_600_000
    consumer = bus.consumer([Candle.TOPIC], group="demo")
    for msg in consumer:
        c = msg.event
        i, j = (c.ts - int(source.times[0])) // step, col[c.symbol]
        ohlcv[:, i, j] = (c.open, c.high, c.low, c.close, c.volume)
    consumer.commit()
    # a symbol's listing is what the source knows (its first bar may lie before this window)
    return Panel.from_ohlcv(source.symbols, source.timeframe, source.times, ohlcv, source.listing_ts())


def _report(args, panel, fp, cut, quality, doc, table, wall, n_events, n_signals, sps) -> str:
    m, n = quality["model"], quality["naive"]
    first, last = (str(fp.times[i].astype("datetime64[ms]"))[:10] for i in (cut, -1))
    streamed = f"{first} -> {last}"
    lines = [
        f"# Continuum demo: {args.model} online on {len(panel.symbols)} assets ({streamed})",
        "",
        f"{n_events:,} candles replayed through the embedded bus; {n_signals:,} signals; "
        f"{sps:,.0f} stream-steps/s; wall time {wall:.0f} s.",
        "",
        "## Forecasts (streamed bars; lower is better except hit rate and rank IC)",
        "",
        "| | ret 1h MSE (bp²) | vol 24h QLIKE | hit rate 1h | rank IC 24h |",
        "|---|---|---|---|---|",
        f"| {args.model} | {m['ret_1h_mse'] * 1e8:.1f} | {m['vol_24h_qlike']:.4f} | {m['hit_rate_1h']:.3f} | "
        f"{m['rank_ic_24h']:+.4f} |",
        f"| naive (zero return, last-week vol) | {n['ret_1h_mse'] * 1e8:.1f} | {n['vol_24h_qlike']:.4f} | 0.500 | 0 |",
        "",
        f"## Backtest on these signals (fees {args.fee_bps:g} bps, fills at the close after the signal)",
        "",
        "```",
        table({k: v["total"] for k, v in doc["strategies"].items()}, "strategy"),
        "```",
        "",
        "Plots: demo.png (forecast vs realised volatility, memory activity), equity.png, tearsheet.png (drawdown,",
        "rolling Sharpe, turnover, costs, per regime; PSR/DSR in backtest.json).",
    ]
    return "\n".join(lines)
