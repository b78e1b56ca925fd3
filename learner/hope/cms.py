"""Continuum Memory System (Nested Learning arXiv §7.1, eqs. 70-71), sequential variant.

A chain of MLP levels after the memory, each updating at its own frequency:

    y_t = MLP^(f_K)( ... MLP^(f_1)(x_t) )                                                   (eq. 70)
    theta^(l)_{i+1} = theta^(l)_i - eta^(l) sum_{t=i-C_l}^{i} grad L(theta^(l)_t; x_t)  if i = 0 mod C_l
                                     0                                                   otherwise  (eq. 71)

L is the *task* loss, so a level only learns from targets that have been observed: the gradient
of a forecast made at bar t enters the accumulator when its target is realised at t+h. Accumulators
are running sums (never token buffers); one level's step is applied exactly when the bar index is a
multiple of its period C_l, and never otherwise. The step is eta^(l) times the level optimizer's
direction (``cms_optimizer``; the default "sgd" is the sum itself), rescaled per stream to norm <=
``cms_clip`` (C-KM's CMSBlock.grad_clip): neither the optimizer nor the clip is in eq. 71.

Each level is residual with a pre-norm, h <- h + Wb silu(Wa LN(h) + ba) + bb (eq. 70 chains the MLPs
without a residual).

Representation: a level's fast weights are ``theta_0 + delta`` with theta_0 the meta-learned initial
state (shared by all streams, trained by pre-training) and delta the per-stream online change. The
online update writes delta only, so pre-training keeps a gradient path to theta_0 while the online
steps themselves are first-order (detached), as in MAML's first-order form.

CHOICE (the paper gives no per-stream story): every level is per-stream — each asset's CMS adapts to
its own regime — and all start from the same meta-learned theta_0, which is where what is shared
across assets lives. Keeping the stream dimension unmixed also keeps one asset's crash from writing
into another asset's slow memory.

Levels are kept in fp32 whatever the model dtype (pitfalls §4.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from learner.hope.config import HopeConfig

PARAMS = ("Wa", "ba", "Wb", "bb")


@dataclass
class LevelState:
    delta: dict[str, torch.Tensor]  # (B, ...) online change of theta
    acc: dict[str, torch.Tensor]  # (B, ...) running gradient sum since the last update
    opt: dict[str, torch.Tensor]  # optimizer memory (momentum etc.), see learner.optim
    last_update_norm: torch.Tensor  # (B,) norm of the last applied step (memory activity)


class CMS(nn.Module):
    def __init__(self, cfg: HopeConfig):
        super().__init__()
        self.cfg = cfg
        d, hc = cfg.d_model, cfg.cms_hidden
        self.levels = nn.ModuleList()
        for _ in cfg.cms_periods:
            lvl = nn.ParameterDict(
                {
                    "Wa": nn.Parameter(torch.randn(hc, d) / d**0.5),
                    "ba": nn.Parameter(torch.zeros(hc)),
                    "Wb": nn.Parameter(0.1 * torch.randn(d, hc) / hc**0.5),
                    "bb": nn.Parameter(torch.zeros(d)),
                }
            )
            self.levels.append(lvl)
        # log-scale of each level's step size eta^(l) (learn_cms_lr): meta-learned, since pre-training keeps the
        # step in the graph within a window (CMS.weights(detach_delta=False)); exp(0) = the configured eta^(l)
        if cfg.learn_cms_lr:
            self.log_lr = nn.Parameter(torch.zeros(len(cfg.cms_periods)))

    def lr(self, level: int) -> torch.Tensor | float:
        """eta^(l): the configured step size, times the meta-learned scale when there is one."""
        base = self.cfg.cms_lr[level]
        return base * torch.exp(self.log_lr[level]) if hasattr(self, "log_lr") else base

    def init_state(self, B: int) -> list[LevelState]:
        out = []
        for lvl in self.levels:
            z = {n: torch.zeros(B, *p.shape, device=p.device) for n, p in lvl.items()}
            out.append(LevelState(z, {n: t.clone() for n, t in z.items()}, {}, torch.zeros(B, device=lvl["Wa"].device)))
        return out

    def weights(self, states: list[LevelState], detach_delta: bool = True) -> list[dict[str, torch.Tensor]]:
        """theta_0 + delta per level, (B, ...) each."""
        assert len(states) == len(self.levels)
        return [self.level_weights(i, s, detach_delta) for i, s in enumerate(states)]

    def level_weights(self, i: int, s: LevelState, detach_delta: bool = True) -> dict[str, torch.Tensor]:
        """Level i's theta_0 + delta, (B, ...) each."""
        lvl = self.levels[i]
        return {n: lvl[n].float() + (s.delta[n].detach() if detach_delta else s.delta[n]) for n in PARAMS}

    @staticmethod
    def forward_levels(theta: list[dict[str, torch.Tensor]], h: torch.Tensor) -> torch.Tensor:
        """eq. 70: h (B,L,d) through every level: h <- h + Wb silu(Wa LN(h) + ba) + bb."""
        h = h.float()
        for th in theta:
            z = torch.baddbmm(th["ba"][:, None], F.layer_norm(h, h.shape[-1:]), th["Wa"].mT)  # (B,L,c)
            h = torch.baddbmm(h + th["bb"][:, None], F.silu(z), th["Wb"].mT)
        return h
