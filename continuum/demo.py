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

from continuum.jsonsafe import jsonsafe

EPILOG = """\
examples:
  continuum demo                                        # all 8 bundled assets, 2018-12 -> 2024-06 (~2-4 min)
  continuum demo --symbols BTC/USDT,ETH/USDT --start 2022-01-01
  continuum demo --pretrain-steps 300                   # meta-learn Hope here instead of the shipped weights
  continuum demo --model har                            # any model from `continuum evaluate --help`

then:  continuum dashboard --lake .continuum/lake --backtest-dir .continuum/demo
"""
PRETRAINED = "hope_pretrained.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("--data", default=None, help="freqtrade-style data dir (default: bundled Binance 1h)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all)")
    p.add_argument("--start", default=None, help="first bar to replay (ISO date; default: all history)")
    p.add_argument("--end", default=None, help="stop before this date")
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


def run(args: argparse.Namespace, cfg) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from continuum.bus import EmbeddedBus
    from continuum.config import BUNDLED_DATA
    from continuum.errors import UserError
    from continuum.lake import Lake
    from ingest.replay import Panel, load_panel, parse_date, replay_events
    from learner.checkpoint import load_pretrained
    from learner.evaluation.regimes import DEFAULT_REGIMES
    from learner.features import build_features
    from learner.hope.config import HopeConfig
    from learner.models import build_model
    from learner.pretrain import PretrainConfig, pretrain
    from learner.signals import signals_frame
    from learner.stream import run_stream
    from strategies.backtest import backtest_from_preds
    from strategies.report import table, write_plot

    torch.set_num_threads(cfg.learner.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else BUNDLED_DATA
    symbols = args.symbols.split(",") if args.symbols else None
    start, end = parse_date(args.start, "--start"), parse_date(args.end, "--end")
    until = parse_date(args.pretrain_until, "--pretrain-until")

    # 1. replay the history as candle events through the embedded bus, and assemble them again
    # with --start, 30 days before it are loaded too: the model's memories warm up on them (no signals)
    warm_from = start - timedelta(days=30) if start is not None else None
    source = load_panel(data, symbols=symbols, start=warm_from, end=end)
    bus = EmbeddedBus(partitions=4)
    n_events = int(source.present.sum())
    with tqdm(total=n_events, desc="replay candles -> bus", unit="ev", disable=args.quiet) as bar:
        for i, ev in enumerate(replay_events(source)):
            bus.publish(ev)
            if i % 5000 == 0:
                bar.update(min(5000, n_events - bar.n))
        bar.update(n_events - bar.n)
    panel = _assemble(bus, source, Panel)
    fp = build_features(panel)
    first = max(until, start) if start is not None else until
    cut = int(np.searchsorted(fp.times, int(first.timestamp() * 1000)))
    cut = cut // 8 * 8
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
            net, meta = load_pretrained(shipped)
            if net.cfg.n_features != base.n_features:
                raise UserError(f"{shipped} was trained on other features; run with --pretrain-steps 150")
            base = net.cfg

        def net_for(_cfg, _net=net):
            return _net

    built = build_model(args.model, fp.x.shape[2], fp.names, base, net_for)
    model = built.model
    if built.needs_history_fit:
        model.fit_history(fp.x[:cut], fp.mask[:cut], fp.y_norm()[:cut].astype(np.float32), fp.ymask[:cut])
    model.reset(len(panel.symbols))
    w0 = max(0, cut - 720) // 8 * 8
    run_stream(model, fp, start=w0, end=cut, chunk=8, clock0=w0)
    with tqdm(total=len(fp.times) - cut, desc=f"{args.model} online", unit="bar", disable=args.quiet) as bar:
        res = run_stream(
            model, fp, start=cut, chunk=8, clock0=w0, record_activity=True, on_chunk=lambda s, e, _p: bar.update(e - s)
        )

    # 3. signals -> bus + lake; backtest; report
    lake = Lake(cfg.lake.root)
    sig = signals_frame(args.model, "binance", panel.symbols, fp.times, res.preds, fp.sigma, fp.mask, res.activity)
    lake.append("signal", sig)
    latest = sig.sort("ts").group_by("symbol", maintain_order=True).tail(24)
    from learner.signals import frame_to_signals

    for s_ in frame_to_signals(latest):
        bus.publish(s_)
    doc, equity = backtest_from_preds(fp, res.preds, DEFAULT_REGIMES, fee_bps=args.fee_bps)
    import json

    (out / "backtest.json").write_text(json.dumps(jsonsafe(doc), indent=1))
    equity.write_parquet(out / "equity.parquet")
    write_plot(equity, DEFAULT_REGIMES, out / "equity.png", title=f"{args.model}: strategies on its online signals")
    quality = _forecast_quality(fp, res.preds, cut)
    _plot_demo(fp, res, cut, out / "demo.png", args.model)
    wall = time.perf_counter() - t0
    report = _report(args, panel, fp, cut, quality, doc, table, wall, n_events, sig.height, res.steps_per_s)
    (out / "report.md").write_text(report)
    print(report)
    print(f"\nwrote {out}/report.md, demo.png, equity.png, backtest.json; {sig.height:,} signals in {cfg.lake.root}")
    import shutil
    import sys

    venv_exe = Path(sys.executable).parent / "continuum"  # ./run demo does not put .venv/bin on PATH
    exe = "continuum" if shutil.which("continuum") or not venv_exe.exists() else str(venv_exe)
    print(f"open the dashboard:  {exe} dashboard --lake {cfg.lake.root} --backtest-dir {out}")
    return 0


def _assemble(bus, source, Panel):
    """Candles consumed from the bus back onto the grid of the replayed panel (gaps stay NaN)."""
    import numpy as np

    T, B = source.close.shape
    arr = {c: np.full((T, B), np.nan) for c in ("open", "high", "low", "close", "volume")}
    col = {s: j for j, s in enumerate(source.symbols)}
    step = int(source.times[1] - source.times[0]) if T > 1 else 3_600_000
    consumer = bus.consumer(["market.candles"], group="demo")
    for msg in consumer:
        c = msg.event
        i = (c.ts - int(source.times[0])) // step
        j = col[c.symbol]
        for name in arr:
            arr[name][i, j] = getattr(c, name)
    consumer.commit()
    present = ~np.isnan(arr["close"])
    return Panel(
        source.symbols,
        source.timeframe,
        source.times,
        arr["open"],
        arr["high"],
        arr["low"],
        arr["close"],
        arr["volume"],
        present,
        source.listed,
    )


def _forecast_quality(fp, preds, cut) -> dict:
    """Forecast error of the model vs. naive references on the streamed bars (what the signals are worth)."""
    import numpy as np

    from learner.evaluation import metrics as M

    ok = fp.ymask.copy() & np.isfinite(preds)
    ok[:cut] = False
    raw = M.to_raw(np.nan_to_num(preds), fp.sigma)
    errs = M.per_bar(raw, fp.y, ok)
    naive = raw.copy()
    naive[..., :2] = 0.0
    naive[..., 2] = 24 * fp.sigma**2  # "tomorrow looks like the last week"
    nerr = M.per_bar(naive, fp.y, ok)
    ic = M.rank_ic(raw[..., 1], fp.y[..., 1], ok[..., 1])
    rows = np.zeros(len(fp.times), dtype=bool)
    rows[cut:] = True
    return {"model": M.summarise(errs, ic, rows), "naive": M.summarise(nerr, np.zeros_like(ic), rows)}


def _plot_demo(fp, res, cut, path, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from learner.evaluation.metrics import to_raw

    j = fp.symbols.index("BTC/USDT") if "BTC/USDT" in fp.symbols else 0
    t = fp.times[cut:].astype("datetime64[ms]")
    raw = to_raw(np.nan_to_num(res.preds[cut:]), fp.sigma[cut:])
    fig, ax = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
    ax[0].plot(t, fp.close[cut:, j], lw=0.7, color="black")
    ax[0].set_yscale("log")
    ax[0].set_title(f"{fp.symbols[j]} close")
    real = np.where(fp.ymask[cut:, j, 2], np.sqrt(fp.y[cut:, j, 2]), np.nan)
    ax[1].plot(t, real, lw=0.4, color="grey", label="realised next-day vol")
    ax[1].plot(t, np.sqrt(raw[:, j, 2]), lw=0.8, color="C0", label=f"{name} forecast")
    ax[1].set_yscale("log")
    ax[1].legend(fontsize=8)
    ax[1].set_title("next-day volatility: forecast at each bar vs. what happened")
    for k, v in res.activity.items():
        if k.endswith("update_norm"):
            s = np.nanmean(v[cut:], axis=1)
            ax[2].plot(t, np.convolve(s, np.ones(168) / 168, mode="same"), lw=0.8, label=k)
    ax[2].set_yscale("symlog", linthresh=1e-4)
    ax[2].legend(fontsize=7, ncol=4)
    ax[2].set_title("memory activity (weekly mean update norms per level)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
        "Plots: demo.png (forecast vs realised volatility, memory activity), equity.png.",
    ]
    return "\n".join(lines)
