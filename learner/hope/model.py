"""Hope (Nested Learning arXiv §8.3, eqs. 94-97): self-modifying Titans followed by a CMS.

References: Behrouz et al., "Nested Learning: The Illusion of Deep Learning Architectures" (NeurIPS
2025; arXiv:2512.24695), and "Titans: Learning to Memorize at Test Time" (arXiv:2501.00663).
Equation numbers refer to arXiv v1. Our notes on the paper: ../shared/reference/nested_learning.md.

    u_t   = LN(x_t W_in)                                 features -> residual stream   (B,L,d)
    o_t   = SelfModTitans(u_t)                           eqs. 76-93                    (B,L,d)
    h_t   = u_t + o_t W_o
    y_t   = MLP^(f_K)( ... MLP^(f_1)(h_t) )             CMS, eqs. 70-71 / 94-97       (B,L,d)
    out_t = LN(y_t) W_head                               3 forecasts in volatility units

Departure from eqs. 94-97, which feed o_t straight into the CMS chain: the residual stream u_t carries
past the memory (h_t = u_t + o_t W_o) and each CMS level is residual with a pre-norm.

:class:`HopeNet` holds the slow (meta) parameters; :class:`HopeState` holds every fast tensor and is
passed in and returned explicitly, never hidden in the modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from learner.hope.cms import CMS, PARAMS, LevelState
from learner.hope.config import HopeConfig
from learner.hope.memory import MemoryState
from learner.hope.titans import CallActivity, SelfModifyingTitans, TitansState
from learner.optim import LEVEL_OPTIMIZERS
from learner.protocol import task_loss


@dataclass
class HopeState:
    step: int  # absolute bar index of the next call (the clock every period refers to)
    titans: TitansState
    cms: list[LevelState]

    def detached(self) -> HopeState:
        """The same state cut from the autograd graph (pre-training carries it across windows)."""
        mems = MemoryState(*(t.detach() for t in self.titans.mems.tensors().values()))
        cms = [
            LevelState(
                {k: t.detach() for k, t in c.delta.items()},
                {k: t.detach() for k, t in c.acc.items()},
                {k: t.detach() for k, t in c.opt.items()},
                c.last_update_norm.detach(),
            )
            for c in self.cms
        ]
        return HopeState(self.step, TitansState(self.titans.conv.detach(), mems), cms)


class HopeNet(nn.Module):
    def __init__(self, cfg: HopeConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.W_in = nn.Linear(cfg.n_features, d)
        self.norm_in = nn.LayerNorm(d)  # pre-norm: the memories see unit-scale inputs whatever the regime
        self.titans = SelfModifyingTitans(cfg)
        self.W_o = nn.Linear(d, d, bias=False)
        nn.init.normal_(self.W_o.weight, std=0.02)
        self.cms = CMS(cfg)
        self.head = nn.Linear(d, cfg.n_outputs)
        nn.init.normal_(self.head.weight, std=0.01)  # small, not zero: CMS levels need a gradient path
        nn.init.zeros_(self.head.bias)

    def init_state(self, B: int, step: int = 0) -> HopeState:
        return HopeState(step, self.titans.init_state(B), self.cms.init_state(B))

    def encode(
        self, st: HopeState, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, HopeState, CallActivity]:
        """Everything before the CMS: x (B,L,F) -> h (B,L,d), the CMS input, which the online loop
        keeps to compute the task gradient once the target is realised."""
        u = self.norm_in(self.W_in(x))
        o, titans, act = self.titans(st.titans, u, mask, st.step)
        h = u + self.W_o(o)
        return h, HopeState(st.step + x.shape[1], titans, st.cms), act

    def readout(self, theta: list[dict[str, torch.Tensor]], h: torch.Tensor) -> torch.Tensor:
        """CMS levels then the head: h (B,L,d) -> (B,L,3)."""
        y = CMS.forward_levels(theta, h)
        return self.head(F.layer_norm(y, y.shape[-1:]))

    def forward(
        self, st: HopeState, x: torch.Tensor, mask: torch.Tensor, delta_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, HopeState, CallActivity]:
        """One call over L bars: forecasts (B,L,3), CMS inputs (B,L,d), new state, activity.

        ``delta_grad``: keep the CMS levels' online change in the graph (pre-training with meta-learned
        step sizes); online it is always a constant."""
        h, st2, act = self.encode(st, x, mask)
        pred = self.readout(self.cms.weights(st.cms, detach_delta=not delta_grad), h)
        return pred, h, st2, act

    def cms_accumulate(
        self,
        levels: list[LevelState],
        h: torch.Tensor,
        y: torch.Tensor,
        ymask: torch.Tensor,
        theta: list[dict[str, torch.Tensor]] | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Add the task-loss gradient of realised forecasts to every level's running sum (eq. 71).

        h (B,n,d) are the CMS inputs kept from the forecast bars, y/ymask (B,n,3) their realised
        targets. The gradient is taken at the levels' current weights (``theta``, CMS.weights(levels) unless the
        caller has them already; ``weights``, cfg.loss_weights as a tensor on the device, likewise), detached
        from everything else
        (first-order); each stream's gradient lands in its own slice, since streams never mix. No target
        realised (ymask all False) adds exact zeros: no ``ymask.any()`` check, which would sync with a GPU.
        """
        theta = self.cms.weights(levels) if theta is None else theta
        leaves = [{n: t.detach().requires_grad_(True) for n, t in th.items()} for th in theta]
        with torch.enable_grad():
            w = self.cfg.loss_weights if weights is None else weights
            loss = task_loss(self.readout(leaves, h.detach()), y, ymask, w)
            grads = torch.autograd.grad(loss, [lv[n] for lv in leaves for n in PARAMS])
        i = 0
        for lvl in levels:
            for n in PARAMS:
                lvl.acc[n] = lvl.acc[n] + grads[i]
                i += 1

    def cms_apply_due(self, levels: list[LevelState], step: int) -> list[int]:
        """eq. 71: level l steps exactly when the bar clock is a multiple of C_l, never otherwise.
        Returns the levels that stepped (decided on the host, from the clock; empty when none did)."""
        cfg = self.cfg
        opt = LEVEL_OPTIMIZERS[cfg.cms_optimizer]
        zero = torch.zeros_like(levels[0].last_update_norm) if levels else None  # one shared, never written in place
        stepped = []
        for i, (lvl, period) in enumerate(zip(levels, cfg.cms_periods, strict=False)):
            lvl.last_update_norm = zero
            if step == 0 or step % period or not cfg.learn_cms:
                continue
            lr = self.cms.lr(i)
            steps = {}
            for n in PARAMS:
                d, lvl.opt = opt(n, lvl.acc[n], lvl.opt)
                steps[n] = lr * d
            # (B,); the eps keeps d sqrt/dx finite at a zero step (meta-learned step sizes differentiate it)
            norm = torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in steps.values()) + 1e-24)
            scale = (cfg.cms_clip / (norm + 1e-12)).clamp(max=1.0)  # clip each stream's step
            for n in PARAMS:
                lvl.delta[n] = lvl.delta[n] - steps[n] * scale.view(-1, *([1] * (steps[n].dim() - 1)))
                lvl.acc[n] = torch.zeros_like(lvl.acc[n])
            lvl.last_update_norm = (norm * scale).detach()
            stepped.append(i)
        return stepped

    def meta_checksum(self) -> str:
        """Fingerprint of the slow weights: a fast state is meaningless with other meta-weights."""
        import hashlib

        hsh = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            hsh.update(k.encode())
            hsh.update(v.detach().cpu().float().numpy().tobytes())
        return hsh.hexdigest()[:16]
