"""Self-modifying Titans (Nested Learning arXiv §8.1-8.2, eqs. 76-93).

Every projection except the query is itself a fast memory that writes itself in context:

    k_t = M_k(x_t),  v_t = M_v(x_t),  eta_t = M_eta(x_t),  alpha_t = M_alpha(x_t)        (eqs. 79-82)
        (eta_t, alpha_t: width-1 outputs squashed into (0, eta_max) and (alpha_min, 1), shared by all memories)
    q_t = x_t W_q                                   the only non-adaptive projection      (eq. 83)
    o_t = M_mem(q_t)                                read with the chunk-boundary state    (eqs. 84, 90)
    v_hat_{□,t} = M_□(v_t)                          each memory's self-generated target   (eq. 85)
    M_□ <- DGD + momentum + decay step on ||M_□(k_t) - v_hat_{□,t}||^2                    (eqs. 86-88)
        (projector on the layer reading k only, heavy-ball momentum: memory.py and docs/learner.md)

q and k are L2-normalised; a causal depthwise convolution (window 4) mixes neighbouring bars first.

Chunked form (§8.2): within a chunk of C bars every generation, read and gradient uses the state at
the chunk boundary, so they run in parallel over the chunk; only the recurrence of eq. 88 is a short
loop. The per-step streaming form is the same function called with one bar at a time: the boundary
state stays fixed until the bar index reaches a multiple of C, so both forms give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from learner.hope.config import HopeConfig
from learner.hope.memory import MemoryState, dgd_momentum_scan, mem_apply, mem_grads

MEMORIES = ("k", "v", "eta", "alpha", "mem")
OTHERS = ("k", "v", "eta", "alpha")


@dataclass
class TitansState:
    conv: torch.Tensor  # (B, window-1, d): the last inputs of the causal convolution
    mems: dict[str, MemoryState]


class SelfModifyingTitans(nn.Module):
    """Slow (meta) parameters: the initial memories, W_q, the convolution, gate biases."""

    def __init__(self, cfg: HopeConfig):
        super().__init__()
        self.cfg = cfg
        d, h = cfg.d_model, cfg.d_hidden
        self.conv_w = nn.Parameter(torch.zeros(d, cfg.conv_window))
        with torch.no_grad():
            self.conv_w[:, -1] = 1.0  # starts as identity on the current bar
        self.conv_b = nn.Parameter(torch.zeros(d))
        self.W_q = nn.Parameter(torch.eye(d) + 0.02 * torch.randn(d, d))
        self.init_W1 = nn.ParameterDict()
        self.init_W2 = nn.ParameterDict()
        for name in MEMORIES:
            d_out = 1 if name in ("eta", "alpha") else d
            self.init_W1[name] = nn.Parameter(0.02 * torch.randn(d_out, h))
            self.init_W2[name] = nn.Parameter(torch.randn(h, d) / d**0.5)
        # CHOICE (ambiguity 5): squashing. eta_t = eta_max sigmoid(.), alpha_t in [alpha_min, 1].
        self.eta_bias = nn.Parameter(torch.tensor(-1.5))
        self.alpha_bias = nn.Parameter(torch.tensor(4.0))  # alpha ~ 0.998: a half-life of ~385 bars (16 days)

    def init_state(self, B: int) -> TitansState:
        d = self.cfg.d_model
        conv = torch.zeros(B, self.cfg.conv_window - 1, d, device=self.conv_w.device)
        mems = {n: MemoryState.init(self.init_W1[n], self.init_W2[n], B) for n in MEMORIES}
        return TitansState(conv, mems)

    def causal_conv(self, u: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise causal convolution over bars. u (B,L,d), cache (B,w-1,d) -> (B,L,d), new cache."""
        w = self.cfg.conv_window
        full = torch.cat([cache, u], dim=1)  # (B, w-1+L, d)
        win = full.unfold(1, w, 1)  # (B, L, d, w)
        out = (win * self.conv_w).sum(-1) + self.conv_b
        return out, full[:, -(w - 1) :]

    def forward(
        self, st: TitansState, x: torch.Tensor, mask: torch.Tensor, step0: int
    ) -> tuple[torch.Tensor, TitansState, dict[str, torch.Tensor]]:
        """One call over bars [step0, step0+L). x (B,L,d), mask (B,L) -> o (B,L,d), new state, activity."""
        cfg = self.cfg
        L = x.shape[1]
        if step0 % cfg.chunk_other + L > cfg.chunk_other:
            raise ValueError(f"a call of {L} bars at bar {step0} crosses a chunk boundary (C={cfg.chunk_other})")
        u, conv = self.causal_conv(x, st.conv)
        m = st.mems
        # generation, all with the boundary state of each memory (eqs. 79-83, 90)
        k = F.normalize(mem_apply(m["k"].W1, m["k"].W2, u), dim=-1)  # (B,L,d)
        v = mem_apply(m["v"].W1, m["v"].W2, u)  # (B,L,d)
        if cfg.norm_values:
            v = F.normalize(v, dim=-1)
        eta = cfg.eta_max * torch.sigmoid(mem_apply(m["eta"].W1, m["eta"].W2, u)[..., 0] + self.eta_bias)
        alpha = cfg.alpha_min + (1 - cfg.alpha_min) * torch.sigmoid(
            mem_apply(m["alpha"].W1, m["alpha"].W2, u)[..., 0] + self.alpha_bias
        )  # (B,L)
        q = F.normalize(u @ self.W_q.T, dim=-1)
        o = mem_apply(m["mem"].W1, m["mem"].W2, q)  # eq. 84: read before this chunk's writes land
        eta = torch.where(mask, eta, torch.zeros_like(eta))
        alpha = torch.where(mask, alpha, torch.ones_like(alpha))
        act = {"eta": _masked_mean(eta, mask), "alpha": _masked_mean(alpha, mask)}
        new = dict(m)
        if cfg.write_memories:
            writers = MEMORIES if cfg.self_modifying else ("mem",)
            # every writing memory as one batch (G*B, ...): the scalar gate memories' output layer is
            # zero-padded to width d and their skip connection switched off, which leaves their numbers exact
            names = [n for n in MEMORIES if n in writers]
            G, B, d = len(names), x.shape[0], cfg.d_model

            def stack(attr: str, mems: dict[str, MemoryState] = m) -> torch.Tensor:
                ts = [getattr(mems[n], attr) for n in names]
                if attr[1] == "1":  # W1, R1, S1: (B, o, h) -> (B, d, h)
                    ts = [F.pad(t, (0, 0, 0, d - t.shape[1])) for t in ts]
                return torch.cat(ts, 0)

            def rep(t: torch.Tensor) -> torch.Tensor:
                return t.repeat(G, *([1] * (t.dim() - 1)))

            res = torch.tensor([0.0 if n in ("eta", "alpha") else 1.0 for n in names], device=x.device)
            res = res.repeat_interleave(B)[:, None, None]  # (G*B, 1, 1): skip connection on/off
            big = MemoryState(*(stack(a) for a in ("W1", "W2", "R1", "R2", "S1", "S2")))
            anchor = None
            if cfg.anchor_memories:  # the meta-learned initial weights, stacked like the state
                init = {n: MemoryState.init(self.init_W1[n], self.init_W2[n], B) for n in names}
                anchor = (stack("W1", init), stack("W2", init))  # (G*B, d, h), (G*B, h, d)
            kG = rep(k)
            v_hat = mem_apply(big.W1, big.W2, rep(v), res)  # eq. 85: each memory's own target
            if cfg.stopgrad_vhat:
                v_hat = v_hat.detach()
            g1, g2, loss, gnorm = mem_grads(big.W1, big.W2, kG, v_hat, cfg.inner_clip, res)  # eqs. 87, 93
            out = dgd_momentum_scan(
                big, g1, g2, kG, rep(eta), rep(alpha), rep(mask), cfg.momentum, cfg.dgd, anchor=anchor
            )
            for i, name in enumerate(names):  # eq. 88 done; split the batch back per memory
                sl = slice(i * B, (i + 1) * B)
                o_n = m[name].W1.shape[1]
                new[name] = MemoryState(
                    *(
                        getattr(out, a)[sl, :o_n] if a[1] == "1" else getattr(out, a)[sl]
                        for a in ("W1", "W2", "R1", "R2", "S1", "S2")
                    )
                )
                if name == "mem":
                    act["surprise"] = _masked_mean(loss[sl], mask)
                    # health: share of tokens whose write the clamp cut, and the size of the running weights
                    act["mem_clip_frac"] = _masked_mean((gnorm[sl] > cfg.inner_clip).to(loss.dtype), mask)
                    act["mem_weight_norm"] = new[name].R1.flatten(1).norm(dim=1) + new[name].R2.flatten(1).norm(dim=1)
                    act["mem_update_norm"] = (new[name].R2 - m[name].R2).flatten(1).norm(dim=1) + (
                        new[name].R1 - m[name].R1
                    ).flatten(1).norm(dim=1)
        end = step0 + L
        for name in MEMORIES:  # chunk boundaries: running weights become the boundary state
            period = cfg.chunk_mem if name == "mem" else cfg.chunk_other
            if end % period == 0:
                new[name] = new[name].commit()
        return o, TitansState(conv, new), act


def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(v.dtype)
    return (v * w).sum(1) / w.sum(1).clamp(min=1)
