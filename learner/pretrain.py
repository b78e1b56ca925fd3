"""Pre-training, the outer level: meta-learn Hope's initial states and projections on history.

Windows of ``seq_len`` bars are cut from the history before ``--until`` (every target inside a window
is realised before the cut-off, so nothing after it is ever seen). Each window is one stream that
starts from the meta-learned initial state and runs exactly as online:

- the self-modifying memories write in context, and the outer gradient flows *through* those writes
  (truncated back-propagation over the window), so the parameters that act only through writes —
  the key, value, learning-rate and decay memories — get a gradient (pitfalls §4.2);
- the CMS levels take their online steps from realised targets (first-order: the steps are detached;
  the initial states theta_0 get the outer gradient through theta_0 + delta).

The outer loss is the task loss on every forecast of the window; AdamW updates the slow parameters.

The command line is ``continuum pretrain`` (commands/pretrain.py)::

    continuum pretrain --data data/binance --until 2019-01-01 --out runs/hope.pt
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from learner.features import FeaturePanel
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.optim import TORCH_OPTIMIZERS
from learner.protocol import realised_window, task_loss
from learner.stream import HORIZON_TUPLE


@dataclass
class PretrainConfig:
    steps: int = 300  # outer AdamW steps
    seq_len: int = 192  # bars per window: the truncation length of back-propagation through writes
    batch: int = 16  # windows (streams) per outer step
    lr: float = 3e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    optimizer: str = "adamw"  # outer optimizer: a key of learner.optim.TORCH_OPTIMIZERS (adamw, m3, delta, ...)


def _windows(fp: FeaturePanel, until: int, seq_len: int, rng: np.random.Generator, n: int, align: int):
    """n random (start, asset) windows that end (targets included) before bar ``until``."""
    hi = until - seq_len - max(HORIZON_TUPLE)
    out = []
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        a = int(rng.integers(0, max(1, hi))) // align * align
        b = int(rng.integers(0, fp.x.shape[1]))
        if fp.mask[a : a + seq_len, b].mean() > 0.9:
            out.append((a, b))
    if not out:
        raise ValueError("no usable pre-training window before the cut-off: use a later --until")
    return out


def pretrain(
    cfg: HopeConfig,
    fp: FeaturePanel,
    until: int,
    pcfg: PretrainConfig | None = None,
    progress: bool = True,
    net: HopeNet | None = None,
) -> tuple[HopeNet, list[float]]:
    """Meta-learn a :class:`HopeNet` on bars ``[0, until)`` of ``fp``. Returns the net and loss curve."""
    pcfg = pcfg or PretrainConfig()
    torch.manual_seed(pcfg.seed)
    rng = np.random.default_rng(pcfg.seed)
    net = net or HopeNet(cfg)
    net.train()
    opt = TORCH_OPTIMIZERS[pcfg.optimizer](net.parameters(), lr=pcfg.lr, weight_decay=pcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, pcfg.steps) / pcfg.steps))
    )
    yn_all = torch.from_numpy(fp.y_norm().astype(np.float32))
    valid_all = torch.from_numpy(fp.ymask)
    x_all = torch.from_numpy(fp.x)
    m_all = torch.from_numpy(fp.mask)
    C = cfg.chunk_other
    align = math.lcm(C, cfg.chunk_mem)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=pcfg.steps, desc="pretrain", unit="step")
    for _ in range(pcfg.steps):
        wins = _windows(fp, until, pcfg.seq_len, rng, pcfg.batch, align)
        idx_t = torch.stack([torch.arange(a, a + pcfg.seq_len) for a, _ in wins])  # (Bw, L)
        idx_b = torch.tensor([b for _, b in wins])[:, None]
        x, mask = x_all[idx_t, idx_b], m_all[idx_t, idx_b]  # (Bw,L,F), (Bw,L)
        yn, valid = yn_all[idx_t, idx_b], valid_all[idx_t, idx_b]  # (Bw,L,K)
        st = net.init_state(len(wins))
        total, count = 0.0, 0.0
        hs = []
        for s in range(0, pcfg.seq_len, C):
            e = s + C
            pred, h, st, _ = net(st, x[:, s:e], mask[:, s:e])
            hs.append(h)
            w = valid[:, s:e]
            total = total + task_loss(pred, yn[:, s:e], w)
            count += float(w.sum())
            if cfg.learn_cms and cfg.cms_periods:
                _online_cms_step(net, st, torch.cat(hs, 1), yn, valid, s, e)
        loss = total / max(count, 1.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), pcfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    if bar is not None:
        bar.close()
    net.eval()
    return net, losses


def _online_cms_step(net: HopeNet, st, h_all: torch.Tensor, yn, valid, s: int, e: int) -> None:
    """The same first-order CMS accumulation and periodic step as online (learner.hope.online)."""
    t0, new = realised_window(s, e, HORIZON_TUPLE, valid.transpose(0, 1))
    net.cms_accumulate(st.cms, h_all[:, t0:e], yn[:, t0:e], new)
    net.cms_apply_due(st.cms, e)
