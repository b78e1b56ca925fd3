"""``continuum pretrain``: meta-learn Hope's initial states and projections on history (:mod:`learner.pretrain`)."""

from __future__ import annotations

import argparse
import time

from commands.options import config_option, split_list
from continuum.config import BUNDLED_DATA, Config

EPILOG = """\
example:
  continuum pretrain --data data/binance --until 2019-01-01 --out runs/hope.pt

The checkpoint holds the config and the meta-weights; pass it to `continuum learn --pretrained`
(or set [learner].pretrained).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--data", default=None, help="freqtrade-style data dir (default: the bundled Binance 1h data)")
    p.add_argument("--until", required=True, help="use bars strictly before this UTC date (ISO)")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all in --data)")
    # unset options keep learner.pretrain.PretrainConfig's defaults (the numbers in the help are those)
    p.add_argument("--steps", type=int, help="outer AdamW steps (default 300)")
    p.add_argument("--seq-len", type=int, help="window / truncation length in bars (default 192)")
    p.add_argument("--batch", type=int, help="windows per step (default 16)")
    p.add_argument("--lr", type=float, help="outer learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, help="seed of the windows and the initial weights (default 0)")
    config_option(p, "--device", key="learner.device", help="cpu | cuda | auto (default [learner].device)")
    p.add_argument("--onchain", default=None, help="'lake' or a daily onchain history dir (learner.onchain)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    import numpy as np
    import torch

    from continuum.timeframes import parse_date, to_ms
    from ingest.replay import load_panel
    from learner.checkpoint import save_pretrained
    from learner.device import pick_device
    from learner.features import build_features
    from learner.hope.config import HopeConfig
    from learner.onchain import source_from_arg
    from learner.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(cfg.learner.threads)
    until = parse_date(args.until, "--until")
    panel = load_panel(args.data or BUNDLED_DATA, symbols=split_list(args.symbols))
    fp = build_features(panel, onchain=source_from_arg(args.onchain, cfg.lake.root, cfg.chain.chain))
    cut = int(np.searchsorted(fp.times, to_ms(until)))
    hcfg = HopeConfig(n_features=fp.x.shape[2])
    device = pick_device(cfg.learner.device)
    t0 = time.perf_counter()
    given = {k: getattr(args, k) for k in ("steps", "seq_len", "batch", "lr", "seed")}
    pcfg = PretrainConfig(**{k: v for k, v in given.items() if v is not None})
    net, losses = pretrain(hcfg, fp, cut, pcfg, device=device)
    save_pretrained(args.out, net, {"until": until.isoformat(), "symbols": panel.symbols, "losses": losses})
    print(
        f"pre-trained on {cut} bars x {len(panel.symbols)} assets in {time.perf_counter() - t0:.0f}s; "
        f"loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}; wrote {args.out}"
    )
    return 0
