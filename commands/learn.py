"""``continuum learn``: the live learner — a consumer group on ``market.candles`` -> Hope -> ``signals``.

The loop, its checkpoints and its restart rules are :class:`learner.service.LearnerService`
(docs/service.md); this module wires it to the configured bus, lake and pre-trained weights.
"""

from __future__ import annotations

import argparse
import signal
import sys

from commands.options import add_metrics_option, config_option, serve_metrics, split_list
from continuum.config import Config
from continuum.errors import UserError

EPILOG = """\
examples:
  continuum learn --pretrained runs/hope.pt                     # [exchange].symbols from config
  CONTINUUM_BUS__KIND=kafka continuum learn --symbols BTC/USDT,ETH/USDT --group learner-1h

Checkpoints go to [learner].checkpoint_dir every [learner].checkpoint_every bars; offsets are
committed only after a checkpoint is written. A restart resumes from the newest checkpoint.
Each signal carries direction, target weight and confidence (docs/signals.md): the weights of the
mv_partial rule (strategies/positions.py), whose book is checkpointed with the model.
Read the latest ones with `continuum signals`.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_learner_options(p)
    p.add_argument("--max-bars", type=int, default=None, help="stop after processing N bars (tests)")
    p.add_argument("--idle-exit", type=float, default=None, help="stop after S seconds without a new candle")
    p.add_argument(
        "--partitioned",
        action="store_true",
        help="scale out: one state per partition of market.candles, so several members of --group share the "
        "partitions (a rebalance hands a partition over through its checkpoint; --checkpoint-dir must be shared)",
    )
    add_metrics_option(p)


def add_learner_options(p: argparse.ArgumentParser, group: str = "learner") -> None:
    """The learner's options, shared with ``continuum live``."""
    config_option(p, "--symbols", key="exchange.symbols", help="comma-separated symbols (default [exchange].symbols)")
    config_option(
        p, "--exchange", key="exchange.name", help="exchange of the candles to consume (default [exchange].name)"
    )
    config_option(p, "--timeframe", key="exchange.timeframe", help="bar timeframe (default [exchange].timeframe)")
    p.add_argument("--group", default=group, help="consumer group (default %(default)s)")
    config_option(
        p, "--pretrained", key="learner.pretrained", help="`continuum pretrain` checkpoint ([learner].pretrained)"
    )
    config_option(p, "--device", key="learner.device", help="cpu | cuda | auto (default [learner].device)")
    p.add_argument("--model-name", default="hope", help="model name carried by the signals (default %(default)s)")
    config_option(p, "--checkpoint-dir", key="learner.checkpoint_dir", help="default [learner].checkpoint_dir")
    config_option(
        p, "--checkpoint-every", key="learner.checkpoint_every", type=int, help="bars ([learner].checkpoint_every)"
    )
    p.add_argument("--window", type=int, default=None, help="bars kept per symbol (default 4800: 200 days of 1h bars)")
    p.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for late symbols before masking them (default 120)"
    )
    p.add_argument("--no-lake", action="store_true", help="publish signals to the bus only")
    p.add_argument(
        "--onchain",
        default=None,
        help="onchain context: 'lake' (hourly aggregates of the lake's chain tables, as `continuum "
        "stream chain` fills them) or a daily-history dir; the pre-trained model must match",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="one line per processed bar on stderr")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from continuum.bus_factory import make_bus

    if args.max_bars is not None and args.max_bars < 1:
        raise UserError("--max-bars must be >= 1")
    if args.partitioned and args.max_bars is not None:
        raise UserError("--max-bars: not with --partitioned (use --idle-exit)")
    metrics = serve_metrics(args)
    bus = make_bus(cfg)
    svc = build_service(args, cfg, bus, metrics=metrics, partitioned=args.partitioned)
    signal.signal(signal.SIGTERM, svc.stop)
    try:
        if args.partitioned:
            svc.run(idle_exit_s=args.idle_exit)
        else:
            svc.run(max_bars=args.max_bars, idle_exit_s=args.idle_exit)
    finally:
        bus.close()
        if metrics is not None:
            metrics.close()
    return 0


def build_service(
    args: argparse.Namespace, cfg: Config, bus, metrics=None, resume_offsets: bool = True, partitioned: bool = False
):
    """The :class:`~learner.service.LearnerService` these options describe, on ``bus`` (``continuum live`` too);
    with ``partitioned`` a :class:`~learner.service.PartitionedLearner` (one state per partition)."""
    import copy

    import torch

    from continuum.lake import Lake
    from learner.device import pick_device
    from learner.features import feature_names
    from learner.hope.online import Hope
    from learner.models import load_hope
    from learner.onchain import source_from_arg
    from learner.service import LearnerService, PartitionedLearner
    from strategies.positions import feed_rule

    torch.set_num_threads(cfg.learner.threads)
    symbols = split_list(cfg.exchange.symbols)
    if not symbols:
        raise UserError("--symbols: name at least one symbol")
    device = pick_device(cfg.learner.device)
    if not cfg.learner.pretrained:
        print(
            "continuum learn: no --pretrained checkpoint ([learner].pretrained is empty): "
            "the model starts UNTRAINED (seed 0)",
            file=sys.stderr,
        )
    model = load_hope(cfg.learner.pretrained, str(device))
    onchain = source_from_arg(args.onchain, cfg.lake.root, cfg.chain.chain)
    if len(feature_names(onchain)) != model.cfg.n_features:
        raise UserError(
            f"the model expects {model.cfg.n_features} features, these inputs give "
            f"{len(feature_names(onchain))}: pre-train with the same --onchain source"
        )
    common = dict(
        timeframe=cfg.exchange.timeframe,
        checkpoint_dir=cfg.learner.checkpoint_dir,
        checkpoint_every=cfg.learner.checkpoint_every,
        keep_checkpoints=cfg.learner.keep_checkpoints,
        **({"window": args.window} if args.window is not None else {}),
        wait_s=args.wait,
        lake=None if args.no_lake else Lake(cfg.lake.root),
        model_name=args.model_name,
        verbose=args.verbose,
        onchain=onchain,
    )
    if partitioned:  # the same meta-weights for every partition's state, each its own copy
        return PartitionedLearner(
            bus,
            lambda: Hope(model.cfg, copy.deepcopy(model.net), device=device),
            symbols,
            cfg.exchange.name,
            group=args.group,
            make_positions=feed_rule,
            metrics=metrics,
            **common,
        )
    return LearnerService(
        bus,
        model,
        symbols,
        exchange=cfg.exchange.name,
        group=args.group,
        positions=feed_rule(),  # each signal's weight and direction: the feed's rule, its book checkpointed
        metrics=metrics,
        resume_offsets=resume_offsets,
        **common,
    )
