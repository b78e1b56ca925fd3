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
the chunk boundary, so they run in parallel over the chunk, and the recurrence of eq. 88 is summed in
closed form over the chunk (``memory.dgd_momentum_chunk``, exact; no loop over bars). The per-step
streaming form is the same function called with one bar at a time: the boundary state stays fixed until
the bar index reaches a multiple of C, so both forms give the same numbers (to float rounding).

Packed layout: the five memories' state is kept as one batch, (G, B, ...) with G = 5 in ``MEMORIES``
order, so every call runs each step once for all memories instead of stacking and splitting them. The
scalar eta/alpha memories' output layer is zero-padded from 1 to d rows and their skip connection is off
(``residual``); the padded rows stay exactly zero (their error, hence their gradient, is zero), so the
numbers are those of five separate memories. Checkpoints keep one entry per memory (``unpack_memories``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from learner.hope.config import HopeConfig
from learner.hope.memory import (
    GradFactors,
    MemoryState,
    dgd_momentum_chunk,
    mem_apply,
    memory_precision,
    self_target_factors,
)

MEMORIES = ("k", "v", "eta", "alpha", "mem")  # the packed order: row g of the packed state is MEMORIES[g]
OTHERS = ("k", "v", "eta", "alpha")
SCALAR = ("eta", "alpha")  # width-1 output, no skip connection
K, V, ETA, ALPHA, MEM = range(len(MEMORIES))


@dataclass
class TitansState:
    conv: torch.Tensor  # (B, window-1, d): the last inputs of the causal convolution
    mems: MemoryState  # all memories packed: W1/R1/S1 (G, B, d, h), W2/R2/S2 (G, B, h, d), G = len(MEMORIES)


def pack_memories(mems: dict[str, MemoryState]) -> MemoryState:
    """Per-memory states (B, o, h) / (B, h, d) -> the packed layout (G, B, d, h) / (G, B, h, d)."""
    d = mems["k"].W2.shape[-1]

    def stack(attr: str) -> torch.Tensor:
        ts = [getattr(mems[n], attr) for n in MEMORIES]
        if attr[1] == "1":  # W1, R1, S1: (B, o, h) -> (B, d, h), zero rows below the output
            ts = [F.pad(t, (0, 0, 0, d - t.shape[-2])) for t in ts]
        return torch.stack(ts)

    return MemoryState(*(stack(a) for a in ("W1", "W2", "R1", "R2", "S1", "S2")))


def unpack_memories(packed: MemoryState) -> dict[str, MemoryState]:
    """The inverse of :func:`pack_memories`: one (B, o, h) / (B, h, d) state per memory (checkpoints)."""
    out = {}
    for g, name in enumerate(MEMORIES):
        o = 1 if name in SCALAR else packed.W1.shape[-2]
        out[name] = MemoryState(*(t[g, :, :o] if a[1] == "1" else t[g] for a, t in packed.tensors().items()))
    return out


@dataclass
class CallActivity:
    """What one call's memory activity is computed from. Kept as tensors so the hot path does no extra
    work and no host sync; :meth:`summary` reduces them when someone asks (``Hope.activity``)."""

    eta: torch.Tensor  # (B, L), 0 on masked bars
    alpha: torch.Tensor  # (B, L), 1 on masked bars
    mask: torch.Tensor  # (B, L)
    clip: float
    # the write, when there was one: the writers' gradient factors, the main memory's row among them, and the
    # packed memories before and after
    write: tuple[GradFactors, int, MemoryState, MemoryState] | None = None

    def summary(self) -> dict[str, torch.Tensor]:
        """name -> (B,): the per-stream means over the call's present bars, and the main memory's health."""
        act = {"eta": _masked_mean(self.eta, self.mask), "alpha": _masked_mean(self.alpha, self.mask)}
        if self.write is not None:
            f, i, before, after = self.write
            loss, gnorm = f.loss[i], f.norm[i]  # (B, L) the main memory's associative loss and pre-clip norm
            act["surprise"] = _masked_mean(loss, self.mask)
            # health: share of tokens whose write the clamp cut, and the size of the running weights
            act["mem_clip_frac"] = _masked_mean((gnorm > self.clip).to(loss.dtype), self.mask)
            (b1, b2), (a1, a2) = (before.R1[MEM], before.R2[MEM]), (after.R1[MEM], after.R2[MEM])
            act["mem_weight_norm"] = a1.flatten(1).norm(dim=1) + a2.flatten(1).norm(dim=1)
            act["mem_update_norm"] = (a2 - b2).flatten(1).norm(dim=1) + (a1 - b1).flatten(1).norm(dim=1)
        return act


class SelfModifyingTitans(nn.Module):
    """Slow (meta) parameters: the initial memories, W_q, the convolution, gate biases (and, with
    ``learn_gate_range``, the gates' ranges)."""

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
            d_out = 1 if name in SCALAR else d
            std = cfg.kv_init_std if name in ("k", "v") else 0.02
            self.init_W1[name] = nn.Parameter(std * torch.randn(d_out, h))
            self.init_W2[name] = nn.Parameter(torch.randn(h, d) / d**0.5)
        # CHOICE (ambiguity 5): squashing. eta_t = eta_max sigmoid(.), alpha_t in [alpha_min, 1].
        self.eta_bias = nn.Parameter(torch.tensor(-1.5))
        self.alpha_bias = nn.Parameter(torch.tensor(4.0))  # alpha ~ 0.998: a half-life of ~385 bars (16 days)
        if cfg.learn_gate_range:  # the ranges' logits (gate_range), at init the configured constants (to rounding)
            a0, r0 = cfg.alpha_min, cfg.eta_max / cfg.alpha_min
            self.gate_range_logit = nn.Parameter(torch.tensor([math.log(a0 / (1 - a0)), math.log(r0 / (1 - r0))]))
        # per packed memory: 1 = skip connection (x + W1 silu(W2 x)), 0 = none (the scalar memories); (G,1,1,1).
        # A buffer, not a per-call tensor: it moves with the module and is never copied from the host again
        res = torch.tensor([0.0 if n in SCALAR else 1.0 for n in MEMORIES]).view(-1, 1, 1, 1)
        self.register_buffer("residual", res, persistent=False)
        self._initial: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None  # initial_memories' memo
        self.write = write  # the chunk's write; compile_write() swaps in a compiled one
        if cfg.conv_init_std:  # drawn last, so every other initial weight is the same as without it
            with torch.no_grad():
                self.conv_w.add_(cfg.conv_init_std * torch.randn(d, cfg.conv_window))

    def gate_range(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """(eta_max, alpha_min): the gates' ranges, eta_t in (0, eta_max), alpha_t in (alpha_min, 1).

        Constants from the config, or with ``learn_gate_range`` meta-parameters. In the paper eta_t and alpha_t are
        outputs of learned memories (eqs. 81-82); squashing them into a range is our CHOICE (ambiguity 5), and this
        knob meta-learns that range instead of fixing it:  alpha_min = sigmoid(a),  eta_max = alpha_min sigmoid(b).
        Any a, b give
        0 < eta_max < alpha_min < 1, so the DGD projector alpha I - eta k k^T (|k| = 1) keeps its eigenvalues in
        (0, 1]: a contraction whatever pre-training learns. Initialised at the configured values (float rounding
        aside), so at init the forward is that of the constant ranges."""
        if not self.cfg.learn_gate_range:
            return self.cfg.eta_max, self.cfg.alpha_min
        alpha_min = torch.sigmoid(self.gate_range_logit[0])
        return alpha_min * torch.sigmoid(self.gate_range_logit[1]), alpha_min

    def compile_write(self) -> None:
        """Run the write through ``torch.compile`` (optional, off by default: it compiles once per call
        length, ~1 min on a CPU, and fuses the write's elementwise passes; the numbers agree to rounding)."""
        self.write = torch.compile(write, dynamic=False)

    def initial_memories(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The meta-learned initial memories packed: W1 (G, 1, d, h), W2 (G, 1, h, d) (differentiable).

        Every call needs them (the anchors). With gradients off (online) they are packed once per version of
        the initial weights, not once per call: the memo is keyed by the parameters' storage and version
        counter, which any in-place change (an optimizer step, ``load_state_dict``, ``.to``) moves on."""
        params = (*self.init_W1.values(), *self.init_W2.values())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._pack_initial()
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._initial is None or self._initial[0] != key:
            self._initial = (key, self._pack_initial())
        return self._initial[1]

    def _pack_initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.d_model
        W1 = torch.stack([F.pad(self.init_W1[n], (0, 0, 0, d - self.init_W1[n].shape[0])) for n in MEMORIES])
        W2 = torch.stack([self.init_W2[n] for n in MEMORIES])
        return W1[:, None], W2[:, None]

    def init_state(self, B: int) -> TitansState:
        """Every stream starts from the meta-learned initial state (kept differentiable)."""
        d = self.cfg.d_model
        conv = torch.zeros(B, self.cfg.conv_window - 1, d, device=self.conv_w.device)
        A1, A2 = self.initial_memories()
        W1, W2 = A1.expand(-1, B, -1, -1), A2.expand(-1, B, -1, -1)
        return TitansState(conv, MemoryState(W1, W2, W1, W2, torch.zeros_like(W1), torch.zeros_like(W2)))

    def causal_conv(self, u: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise causal convolution over bars. u (B,L,d), cache (B,w-1,d) -> (B,L,d), new cache."""
        w = self.cfg.conv_window
        full = torch.cat([cache, u], dim=1)  # (B, w-1+L, d)
        win = full.unfold(1, w, 1)  # (B, L, d, w)
        out = (win * self.conv_w).sum(-1) + self.conv_b
        return out, full[:, -(w - 1) :]

    def forward(
        self, st: TitansState, x: torch.Tensor, mask: torch.Tensor, step0: int
    ) -> tuple[torch.Tensor, TitansState, CallActivity]:
        """One call over bars [step0, step0+L). x (B,L,d), mask (B,L) -> o (B,L,d), new state, activity (of the
        call's last memory chunk).

        The convolution and the query do not depend on the memories: computed once for the call. The memories
        then run chunk by chunk (a call may span several; each chunk reads and writes at its boundary state)."""
        cfg, L, C = self.cfg, x.shape[1], self.cfg.chunk_other
        with memory_precision(cfg.mem_precision, x.device.type):
            u, conv = self.causal_conv(x, st.conv)
            q = F.normalize(u @ self.W_q.T, dim=-1)  # eq. 83: the only static projection
            # what every chunk of the call shares, built once: the memories' inputs (the main memory reads q),
            # the gate biases, the anchors
            inp = torch.stack([q if n == "mem" else u for n in MEMORIES])  # (G,B,L,d)
            bias = torch.stack([self.eta_bias, self.alpha_bias])[:, None, None]  # (2,1,1)
            anchor = self.initial_memories() if cfg.anchor_memories else None  # (G, 1, ...), broadcast over streams
            ranges = self.gate_range()  # (eta_max, alpha_min)
            mems, outs, pos = st.mems, [], 0
            while pos < L:
                n = min(L - pos, C - (step0 + pos) % C)
                sl = slice(pos, pos + n)
                o, mems, act = self._chunk(mems, inp[:, :, sl], mask[:, sl], step0 + pos, bias, anchor, ranges)
                outs.append(o)
                pos += n
        return (outs[0] if len(outs) == 1 else torch.cat(outs, 1)), TitansState(conv, mems), act

    def _chunk(
        self,
        m: MemoryState,
        inp: torch.Tensor,
        mask: torch.Tensor,
        step0: int,
        bias: torch.Tensor,
        anchor: tuple[torch.Tensor, torch.Tensor] | None,
        ranges: tuple[torch.Tensor | float, torch.Tensor | float],
    ) -> tuple[torch.Tensor, MemoryState, CallActivity]:
        """Bars [step0, step0+L) within one memory chunk: the memories' inputs inp (G,B,L,d) (u, the main memory
        q) -> o (B,L,d), the memories, activity. ``bias`` (2,1,1): the eta and alpha gate biases; ``anchor``: the
        initial memories (G,1,...) when writes are anchored; ``ranges``: (eta_max, alpha_min), :meth:`gate_range`."""
        cfg = self.cfg
        L = inp.shape[2]
        # generation and the read, every memory at its boundary state, one batched call (eqs. 79-84, 90)
        out = mem_apply(m.W1, m.W2, inp, self.residual).float()  # (G,B,L,d); fp32 whatever the products ran in
        if cfg.norm_values:  # k and v L2-normalised together
            k, v = F.normalize(out[K : V + 1], dim=-1)  # (B,L,d) each
        else:
            k, v = F.normalize(out[K], dim=-1), out[V]
        gate = torch.sigmoid(out[ETA : ALPHA + 1, ..., 0] + bias)
        # a masked bar writes nothing: eta 0, alpha 1 (memory.dgd_momentum_loop)
        eta_max, alpha_min = ranges
        eta = torch.where(mask, eta_max * gate[0], 0.0)  # (B,L)
        alpha = torch.where(mask, alpha_min + (1 - alpha_min) * gate[1], 1.0)
        o = out[MEM]  # eq. 84: read before this chunk's writes land
        act = CallActivity(eta, alpha, mask, cfg.inner_clip)
        new = m
        if cfg.write_memories:
            knobs = (cfg.inner_clip, cfg.momentum, cfg.dgd, cfg.stopgrad_vhat)
            if cfg.self_modifying:  # every memory writes
                new, f = self.write(m, k, v, eta, alpha, mask, self.residual, anchor, *knobs)
            else:  # only the main one (the last row); the others keep their state
                g = slice(MEM, MEM + 1)
                w = MemoryState(*(t[g] for t in m.tensors().values()))  # views, no copy
                anchor = None if anchor is None else (anchor[0][g], anchor[1][g])
                w, f = self.write(w, k, v, eta, alpha, mask, self.residual[g], anchor, *knobs)
                pairs = zip(m.tensors().values(), w.tensors().values(), strict=True)
                new = MemoryState(*(torch.cat([a[:MEM], b]) for a, b in pairs))
            act.write = (f, -1, m, new)  # the main memory is the writers' last row
        end = step0 + L
        # chunk boundaries: running weights become the boundary state (chunk_mem is a multiple of chunk_other)
        if end % cfg.chunk_mem == 0:
            new = MemoryState(new.R1, new.R2, new.R1, new.R2, new.S1, new.S2)
        elif end % cfg.chunk_other == 0:  # all but the main memory
            W1 = torch.cat([new.R1[:MEM], new.W1[MEM:]])
            W2 = torch.cat([new.R2[:MEM], new.W2[MEM:]])
            new = MemoryState(W1, W2, new.R1, new.R2, new.S1, new.S2)
        return o, new, act


def write(
    w: MemoryState,
    k: torch.Tensor,
    v: torch.Tensor,
    eta: torch.Tensor,
    alpha: torch.Tensor,
    mask: torch.Tensor,
    residual: torch.Tensor,
    anchor: tuple[torch.Tensor, torch.Tensor] | None,
    clip: float,
    beta: float,
    dgd: bool,
    stopgrad_vhat: bool,
) -> tuple[MemoryState, GradFactors]:
    """The writing memories' update over one chunk: eq. 85, each memory's own target v_hat = M(v); eqs. 87, 93,
    the clipped gradient factors at k; eq. 88, the write. k, v, eta, alpha and the mask are shared by every
    memory: passed at (B, ...) and broadcast against the state (n, B, ...)."""
    _, f = self_target_factors(w.W1, w.W2, k, v, clip, residual, detach_target=stopgrad_vhat)
    return dgd_momentum_chunk(w, f, k, eta, alpha, mask, beta, dgd, anchor), f


def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(v.dtype)
    return (v * w).sum(1) / w.sum(1).clamp(min=1)
