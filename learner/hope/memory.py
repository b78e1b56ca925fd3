"""Fast residual-MLP memories and their in-context update (Nested Learning arXiv §8, eqs. 86-93).

A memory is ``M(x) = x + W1 silu(W2 x)`` (eq. 89; no residual when the output width differs, as for
the scalar eta/alpha memories). Its weights are *fast state*: one copy per stream, a leading stream
dimension B on every tensor, never mixed across streams.

The inner objective is the L2 associative loss ``L(M; k, v_hat) = ||M(k) - v_hat||^2`` (eq. 87).
Gradients are closed-form (no autograd-in-autograd), so writes also work under ``torch.no_grad``
and stay differentiable for the outer loop when it wants them.

One write (eq. 88, with the momentum that Table 6's "w/o momentum" row implies)::

    g_t  = clip(grad L at the chunk-boundary state)  (eq. 93; factor 2 of the squared norm kept;
                                                      one norm over both layers, <= clip, per token)
    S_t  = beta S_{t-1} + g_t                        beta constant (HopeConfig.momentum)
    W2_t = W2_{t-1} (alpha_t I - eta_t k_t k_t^T) - eta_t S2_t     # DGD projector on the layer reading k
    W1_t = alpha_t W1_{t-1} - eta_t S1_t                            # decay + GD on the output layer

CHOICE (paper ambiguity 1, "double decay"): the projector acts on W2 only, the layer that reads k,
as in the most complete public reproduction; W1 (whose input is silu(W2 k), not k) gets alpha-decay
and the gradient step. This does not keep k k^T from acting twice on W2: W2's own L2 gradient is
g2 = delta k^T, also along k, so W2 gets both the projector's -eta (W2 k) k^T and -eta delta k^T (via
S2), which is eq. 88/93 read literally. With ||k|| = 1 and 0 < eta <= alpha <= 1 the projector's
eigenvalues are alpha and alpha - eta: non-expansive (a contraction for alpha < 1); the gradient
terms come on top.

The momentum is the heavy-ball form (torch's SGD momentum) with a constant beta: S sums raw
gradients and the current eta_t scales all of it. Titans' momentum (S_t = eta_t S_{t-1} - theta_t
grad, with data-dependent decay eta_t and step size theta_t) scales each gradient by its own step
size when it enters S; the two agree only for a constant learning rate. docs/learner.md has the
comparison with eq. 88, the DGD derivation and Titans.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MemoryState:
    """One memory for B streams. W* are the boundary weights (read, generate, take gradients at);
    R* the running weights the sequential recurrence writes into; S* the momentum."""

    W1: torch.Tensor  # (B, d_out, h)
    W2: torch.Tensor  # (B, h, d_in)
    R1: torch.Tensor
    R2: torch.Tensor
    S1: torch.Tensor
    S2: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"W1": self.W1, "W2": self.W2, "R1": self.R1, "R2": self.R2, "S1": self.S1, "S2": self.S2}

    @classmethod
    def init(cls, W1_0: torch.Tensor, W2_0: torch.Tensor, B: int) -> MemoryState:
        """Every stream starts from the meta-learned initial state (kept differentiable)."""
        W1 = W1_0.unsqueeze(0).expand(B, *W1_0.shape)
        W2 = W2_0.unsqueeze(0).expand(B, *W2_0.shape)
        return cls(W1, W2, W1, W2, torch.zeros_like(W1), torch.zeros_like(W2))

    def commit(self) -> MemoryState:
        """At the memory's chunk boundary the running weights become the new boundary state."""
        return MemoryState(self.R1, self.R2, self.R1, self.R2, self.S1, self.S2)


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def mem_apply(
    W1: torch.Tensor, W2: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """M(x) = x + W1 silu(W2 x)  (eq. 89).  W1 (B,o,h), W2 (B,h,i), x (B,L,i) -> (B,L,o).

    ``residual`` (B,1,1) in {0, 1} says per row whether the skip connection applies (memories of
    different kinds batched together); by default it applies when the widths match.
    """
    y = torch.einsum("boh,blh->blo", W1, F.silu(torch.einsum("bhi,bli->blh", W2, x)))
    if residual is not None:
        return y + residual * x
    return x + y if y.shape[-1] == x.shape[-1] else y


def mem_grads(
    W1: torch.Tensor,
    W2: torch.Tensor,
    k: torch.Tensor,
    v_hat: torch.Tensor,
    clip: float,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token gradients of ||M(k_t) - v_hat_t||^2 at fixed (W1, W2)  (eq. 87, 93).

    k (B,L,i), v_hat (B,L,o) -> g1 (B,L,o,h), g2 (B,L,h,i), and the per-token loss (B,L) (surprise).
    Each token's gradient, one norm over g1 and g2 together, is rescaled to norm <= clip (pitfalls §4.1,
    max_grad_norm). v_hat is a constant here whatever ``stopgrad_vhat`` says: that flag only cuts the
    outer (pre-training) graph through v_hat.
    """
    z = torch.einsum("bhi,bli->blh", W2, k)  # (B,L,h)
    a = F.silu(z)
    out = torch.einsum("boh,blh->blo", W1, a)
    if residual is not None:
        out = out + residual * k
    elif out.shape[-1] == k.shape[-1]:
        out = out + k
    e = out - v_hat  # (B,L,o)
    g1 = 2 * torch.einsum("blo,blh->bloh", e, a)
    dz = 2 * torch.einsum("boh,blo->blh", W1, e) * silu_grad(z)
    g2 = torch.einsum("blh,bli->blhi", dz, k)
    norm = torch.sqrt(g1.pow(2).sum((-1, -2)) + g2.pow(2).sum((-1, -2)) + 1e-12)  # (B,L)
    scale = (clip / norm).clamp(max=1.0)[..., None, None]
    return g1 * scale, g2 * scale, e.pow(2).sum(-1), norm


def dgd_momentum_scan(
    st: MemoryState,
    g1: torch.Tensor,
    g2: torch.Tensor,
    k: torch.Tensor,
    eta: torch.Tensor,
    alpha: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    dgd: bool,
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> MemoryState:
    """Apply the write above (eq. 88 with momentum; the projector on W2 only, and only when ``dgd``) token
    by token over a chunk into the running weights R (boundary W untouched).

    The gradients were computed for the whole chunk in parallel at the boundary state; only this cheap
    recurrence is sequential. Masked tokens (gaps, held-out bars) leave R and S unchanged.
    g1 (B,L,o,h), g2 (B,L,h,i), k (B,L,i), eta/alpha/mask (B,L).

    ``anchor`` (A1, A2), the meta-learned initial weights: retention then acts on what was *written*,
    D = R - A, instead of on the whole weight (``anchor_memories``)::

        R2 <- A2 + (R2 - A2)(alpha I - eta k k^T) - eta S2        R1 <- A1 + alpha (R1 - A1) - eta S1

    so for any stream length the memory stays within eta |S| / (1 - alpha) of where pre-training put it,
    and alpha < 1 forgets toward that state rather than toward zero (which a residual memory never is).
    """
    R1, R2, S1, S2 = st.R1, st.R2, st.S1, st.S2
    # A masked token has eta = 0 and alpha = 1 (set by the caller); with its gradient zeroed and its
    # momentum factor 1 the loop below leaves R and S exactly as they were, without a branch per token.
    keep = mask[..., None, None].to(g1.dtype)
    g1, g2 = g1 * keep, g2 * keep
    b = torch.where(mask, torch.full_like(eta, beta), torch.ones_like(eta))
    A1, A2 = anchor if anchor is not None else (None, None)
    for t in range(k.shape[1]):
        e, a, bt = eta[:, t, None, None], alpha[:, t, None, None], b[:, t, None, None]
        S1 = torch.addcmul(g1[:, t], S1, bt)
        S2 = torch.addcmul(g2[:, t], S2, bt)
        D2 = R2 if A2 is None else R2 - A2  # the part retention acts on
        D1 = R1 if A1 is None else R1 - A1
        if dgd:  # D2 (alpha I - eta k k^T) - eta S2 = alpha D2 - eta ((D2 k) k^T + S2)
            kt = k[:, t]  # (B,i)
            proj = torch.bmm(D2, kt[:, :, None]) * kt[:, None, :]
            D2 = a * D2 - e * (proj + S2)
        else:
            D2 = a * D2 - e * S2
        D1 = a * D1 - e * S1
        R2 = D2 if A2 is None else A2 + D2
        R1 = D1 if A1 is None else A1 + D1
    return MemoryState(st.W1, st.W2, R1, R2, S1, S2)
