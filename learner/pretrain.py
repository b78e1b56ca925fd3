"""Pre-training, the outer level: meta-learn Hope's initial states and projections on history.

Streams are cut from the history before ``--until`` (every target a stream forecasts is realised before
the cut-off, so nothing after it is ever seen). Each stream starts from the meta-learned initial state
and runs exactly as online:

- the self-modifying memories write in context, and the outer gradient flows *through* those writes
  within a window of ``seq_len`` bars (truncated back-propagation), so the parameters that act only
  through writes — the key, learning-rate and decay memories, and the value memory when its targets
  stay in the graph (``stopgrad_vhat=False``) — get a gradient (pitfalls §4.2);
- the CMS levels take their online steps from realised targets at their own periods on the stream's
  clock (first-order: the gradient sums are detached; theta_0 gets the outer gradient through
  theta_0 + delta, and with ``learn_cms_lr`` each level's step size through the steps of the window).

Long horizons (``carry`` > 1, pitfalls §4.9): a stream runs ``carry`` consecutive windows with its whole
state carried from one to the next — the gradient is cut at window edges, the stream goes on — so one
stream covers ``carry x seq_len`` bars, every CMS level steps many times, and the outer loss sees the
memories after thousands of writes, as deployed. Forecasts made near a window's end are learned from
(CMS) in the next window, when their targets are realised, exactly as online. ``carry=1`` is the first
landing's recipe: every window a fresh stream.

The outer loss is the task loss on every forecast of the window (weighted like the online CMS loss when
``weighted``); AdamW updates the slow parameters.

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
    carry: int = 24  # consecutive windows a stream runs with its state carried (1: a fresh stream every window)
    weighted: bool = True  # outer loss weighted like the online CMS loss (HopeConfig.loss_weights)
    step_size_lr_mult: float = 1.0  # outer learning rate of the CMS step-size scales, relative to ``lr``
    # outer learning rate of the gate ranges' logits (when learn_gate_range is on), relative to ``lr``: two logits
    # moved < 5% in 300 steps at 1x; 10x was the best of 1x, 10x, 30x on the validation split (docs/results.md)
    gate_range_lr_mult: float = 10.0
    compile: bool = False  # the memories' write through torch.compile (SelfModifyingTitans.compile_write)


def _windows(fp: FeaturePanel, until: int, seq_len: int, rng: np.random.Generator, n: int, align: int):
    """n random (start, asset) streams of ``seq_len`` bars that end (targets included) before bar ``until``."""
    hi = until - seq_len - max(HORIZON_TUPLE)
    if hi < 0:  # a stream this long would reach past the cut-off (its targets too)
        raise ValueError("no usable pre-training window before the cut-off: use a later --until")
    need = 0.9 if seq_len <= 1024 else 0.8  # long streams may cross an exchange outage
    out = []
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        a = int(rng.integers(0, max(1, hi))) // align * align
        b = int(rng.integers(0, fp.x.shape[1]))
        if fp.mask[a : a + seq_len, b].mean() > need:
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
    device: str | torch.device = "cpu",
) -> tuple[HopeNet, list[float]]:
    """Meta-learn a :class:`HopeNet` on bars ``[0, until)`` of ``fp``. Returns the net (on ``device``) and the
    loss curve. The history stays on the host; each outer step's windows are gathered there and moved to
    ``device`` once, and the step syncs with the host once (its loss)."""
    pcfg = pcfg or PretrainConfig()
    torch.manual_seed(pcfg.seed)
    rng = np.random.default_rng(pcfg.seed)
    device = torch.device(device)
    net = (net or HopeNet(cfg)).to(device)
    net.train()
    if pcfg.compile:
        net.titans.compile_write()
    # the CMS step-size scales (learn_cms_lr) may learn faster: their gradient comes through a few steps per window
    scales = [p for n, p in net.named_parameters() if n == "cms.log_lr"]
    # the gate ranges' logits (learn_gate_range) without weight decay, which would pull them toward 0.5, not 0
    ranges = [p for n, p in net.named_parameters() if n == "titans.gate_range_logit"]
    rest = [p for n, p in net.named_parameters() if n not in ("cms.log_lr", "titans.gate_range_logit")]
    groups = [{"params": rest}] + ([{"params": scales, "lr": pcfg.lr * pcfg.step_size_lr_mult}] if scales else [])
    groups += [{"params": ranges, "lr": pcfg.lr * pcfg.gate_range_lr_mult, "weight_decay": 0.0}] if ranges else []
    opt = TORCH_OPTIMIZERS[pcfg.optimizer](groups, lr=pcfg.lr, weight_decay=pcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, pcfg.steps) / pcfg.steps))
    )
    yn_all = torch.from_numpy(fp.y_norm().astype(np.float32))
    valid_all = torch.from_numpy(fp.ymask)
    x_all = torch.from_numpy(fp.x)
    m_all = torch.from_numpy(fp.mask)
    C, L, H = cfg.chunk_other, pcfg.seq_len, max(HORIZON_TUPLE)
    carry = max(1, min(pcfg.carry, (until - H) // L))  # a short history gets shorter streams, never a leak
    align = math.lcm(C, cfg.chunk_mem)
    weights = cfg.loss_weights if pcfg.weighted else None
    w_k = torch.tensor(weights if weights else (1.0, 1.0, 1.0), device=device)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=pcfg.steps, desc="pretrain", unit="step")
    starts: list[tuple[int, int]] = []
    st, h_prev = None, None
    for i in range(pcfg.steps):
        w = i % carry  # which window of the streams' current segment
        if w == 0:  # new streams from the meta-learned initial state
            starts = _windows(fp, until, carry * L, rng, pcfg.batch, align)
            st, h_prev = net.init_state(len(starts)), None
        P = H if h_prev is not None else 0  # bars before the window whose targets land in it
        idx_t = torch.stack([torch.arange(a + w * L - P, a + (w + 1) * L) for a, _ in starts])  # (Bw, P+L)
        idx_b = torch.tensor([b for _, b in starts])[:, None]
        x, mask = x_all[idx_t[:, P:], idx_b].to(device), m_all[idx_t[:, P:], idx_b].to(device)  # (Bw,L,F), (Bw,L)
        yn, valid = yn_all[idx_t, idx_b].to(device), valid_all[idx_t, idx_b].to(device)  # (Bw,P+L,K)
        total, count = 0.0, 0.0  # tensors after the first chunk: no host sync per chunk
        hs = [h_prev] if P else []
        for s in range(0, L, C):
            e = s + C
            pred, h, st, _ = net(st, x[:, s:e], mask[:, s:e], delta_grad=cfg.learn_cms_lr)
            hs.append(h)
            vw = valid[:, P + s : P + e]
            total = total + task_loss(pred, yn[:, P + s : P + e], vw, weights)
            count = count + (vw * w_k).sum()
            if cfg.learn_cms and cfg.cms_periods:
                _online_cms_step(net, st, torch.cat(hs, 1), yn, valid, P + s, P + e)
        loss = total / torch.clamp(torch.as_tensor(count, device=device), min=1.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), pcfg.grad_clip)
        opt.step()
        sched.step()
        if carry > 1:  # the stream goes on; the gradient is cut here
            st, h_prev = st.detached(), torch.cat(hs, 1)[:, -H:].detach()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    if bar is not None:
        bar.close()
    net.eval()
    return net, losses


def _online_cms_step(net: HopeNet, st, h_all: torch.Tensor, yn, valid, s: int, e: int) -> None:
    """The same first-order CMS accumulation and periodic step as online (learner.hope.online).

    Indices are local to the arrays (h_all, yn, valid: (Bw, n, ...)); the levels step on the stream's clock.
    """
    t0, new = realised_window(s, e, HORIZON_TUPLE, valid.transpose(0, 1))
    net.cms_accumulate(st.cms, h_all[:, t0:e], yn[:, t0:e], new)
    net.cms_apply_due(st.cms, st.step)
