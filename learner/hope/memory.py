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

Two implementations of the write: ``dgd_momentum_loop`` runs the recurrence above bar by bar on
materialised gradients (the reference, kept for the tests); ``dgd_momentum_chunk`` computes the same
end-of-chunk state in closed form from rank-1 gradient factors, with no loop over bars (what the model runs;
docs/learner.md, "The parallel chunk form of the write").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MemoryState:
    """One memory for B streams. W* are the boundary weights (read, generate, take gradients at);
    R* the running weights the sequential recurrence writes into; S* the momentum."""

    W1: torch.Tensor  # (B, d_out, h), or (G, B, d_out, h) for G memories packed (titans.py)
    W2: torch.Tensor  # (B, h, d_in), or (G, B, h, d_in)
    R1: torch.Tensor
    R2: torch.Tensor
    S1: torch.Tensor
    S2: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"W1": self.W1, "W2": self.W2, "R1": self.R1, "R2": self.R2, "S1": self.S1, "S2": self.S2}


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _times_silu_grad(g: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """g * silu'(z): torch's fused kernel when no outer gradient is needed (it has no double backward),
    the formula otherwise; the same numbers."""
    if torch.is_grad_enabled() and (g.requires_grad or z.requires_grad):
        return g * silu_grad(z)
    return torch.ops.aten.silu_backward(g, z)


def mem_apply(
    W1: torch.Tensor, W2: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """M(x) = x + W1 silu(W2 x)  (eq. 89).  W1 (...,o,h), W2 (...,h,i), x (...,L,i) -> (...,L,o).

    ``...`` is any batch shape: (B,) streams, or (G, B) memories x streams in the packed layout.
    ``residual`` (broadcastable to the output, values in {0, 1}) says per row whether the skip connection
    applies (memories of different kinds batched together); by default it applies when the widths match.
    """
    return _skip(F.silu(x @ W2.mT) @ W1.mT, x, residual)


@dataclass
class GradFactors:
    """Each token's inner gradient as rank-1 factors, clip scale (and later the mask) folded in::

        g1_t = e_t a_t^T        (o x h)        g2_t = dz_t k_t^T        (h x i)

    Materialising g1 and g2 costs L*(o*h + h*i) numbers per memory and stream; the factors cost L*(o + h + h)
    and every use of the gradients below is a matrix product with them.
    """

    e: torch.Tensor  # (..., L, o)  2 c_t (M(k_t) - v_hat_t): the factor 2 of the squared norm and the clip scale c_t
    a: torch.Tensor  # (..., L, h)  silu(W2 k_t)
    dz: torch.Tensor  # (..., L, h)  c_t 2 (W1^T (M(k_t) - v_hat_t)) * silu'(W2 k_t)
    loss: torch.Tensor  # (..., L)  ||M(k_t) - v_hat_t||^2, the surprise
    norm: torch.Tensor  # (..., L)  ||(g1_t, g2_t)|| before the clip
    z: torch.Tensor  # (..., L, h)  W2 k_t, the pre-activation at the boundary weights: the write's K W2^T

    def materialise(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g1 (...,L,o,h), g2 (...,L,h,i): the per-token gradients themselves (the reference path, tests)."""
        return self.e[..., :, None] * self.a[..., None, :], self.dz[..., :, None] * k[..., None, :]


def mem_grad_factors(
    W1: torch.Tensor,
    W2: torch.Tensor,
    k: torch.Tensor,
    v_hat: torch.Tensor,
    clip: float,
    residual: torch.Tensor | None = None,
) -> GradFactors:
    """Per-token gradients of ||M(k_t) - v_hat_t||^2 at fixed (W1, W2)  (eq. 87, 93), as rank-1 factors.

    k (...,L,i), v_hat (...,L,o). Each token's gradient, one norm over g1 and g2 together, is rescaled to
    norm <= clip (pitfalls §4.1, max_grad_norm). The Frobenius norm of a rank-1 matrix is the product of its
    factors' norms, ||g1|| = 2 ||e|| ||a||, ||g2|| = ||dz|| ||k||, so the clip needs no materialised gradient.
    v_hat is a constant here whatever ``stopgrad_vhat`` says: that flag only cuts the outer (pre-training)
    graph through v_hat.
    """
    z = k @ W2.mT  # (...,L,h)
    a = F.silu(z)
    return _factors(W1, z, a, _skip(a @ W1.mT, k, residual), k, v_hat, clip)


def self_target_factors(
    W1: torch.Tensor,
    W2: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    clip: float,
    residual: torch.Tensor | None = None,
    detach_target: bool = False,
) -> tuple[torch.Tensor, GradFactors]:
    """eq. 85 then eqs. 87/93: the memory's own target v_hat = M(v) and the gradient factors of
    ||M(k) - v_hat||^2 (``mem_grad_factors``), with v and k through the weights as one batch (one product per
    layer instead of two). k, v (...,L,i) -> v_hat (...,L,o), factors. ``detach_target`` cuts v_hat from the
    outer graph (``stopgrad_vhat``)."""
    L = k.shape[-2]
    x = torch.cat([v, k], -2)  # (...,2L,i)
    z = x @ W2.mT  # (...,2L,h)
    a = F.silu(z)
    y = _skip(a @ W1.mT, x, residual)  # (...,2L,o)
    v_hat = y[..., :L, :]
    if detach_target:
        v_hat = v_hat.detach()
    return v_hat, _factors(W1, z[..., L:, :], a[..., L:, :], y[..., L:, :], k, v_hat, clip)


def _skip(y: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    """The skip connection of eq. 89: per row by ``residual``, else when the widths match."""
    if residual is not None:
        return y + residual * x
    return y + x if y.shape[-1] == x.shape[-1] else y


def _factors(
    W1: torch.Tensor,
    z: torch.Tensor,
    a: torch.Tensor,
    out: torch.Tensor,
    k: torch.Tensor,
    v_hat: torch.Tensor,
    clip: float,
) -> GradFactors:
    """The clipped rank-1 factors from the forward pass at k: z = W2 k, a = silu(z), out = M(k)."""
    e = out - v_hat  # (...,L,o)
    dz = _times_silu_grad(2 * (e @ W1), z)  # (...,L,h)
    sqn = torch.linalg.vecdot  # squared norms along the last dim, one kernel each
    loss = sqn(e, e)
    norm = torch.sqrt(4 * loss * sqn(a, a) + sqn(dz, dz) * sqn(k, k) + 1e-12)  # (...,L)
    scale = (clip / norm).clamp(max=1.0)
    return GradFactors(e * (2 * scale)[..., None], a, dz * scale[..., None], loss, norm, z)


def mem_grads(
    W1: torch.Tensor,
    W2: torch.Tensor,
    k: torch.Tensor,
    v_hat: torch.Tensor,
    clip: float,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same gradients materialised: g1 (...,L,o,h), g2 (...,L,h,i), the loss and the pre-clip norm (...,L).
    The reference path (``dgd_momentum_loop``) and the tests use it; the model uses the factors."""
    f = mem_grad_factors(W1, W2, k, v_hat, clip, residual)
    g1, g2 = f.materialise(k)
    return g1, g2, f.loss, f.norm


def dgd_momentum_loop(
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
    """The reference: apply the write above (eq. 88 with momentum; the projector on W2 only, and only when
    ``dgd``) token by token over a chunk into the running weights R (boundary W untouched).

    ``dgd_momentum_chunk`` computes the same in parallel over the chunk and is what the model runs; this
    loop is what it is tested against. Masked tokens (gaps, held-out bars) leave R and S unchanged.
    g1 (...,L,o,h), g2 (...,L,h,i), k (...,L,i), eta/alpha/mask (...,L).

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
    for t in range(k.shape[-2]):
        e, a, bt = eta[..., t, None, None], alpha[..., t, None, None], b[..., t, None, None]
        S1 = torch.addcmul(g1[..., t, :, :], S1, bt)
        S2 = torch.addcmul(g2[..., t, :, :], S2, bt)
        D2 = R2 if A2 is None else R2 - A2  # the part retention acts on
        D1 = R1 if A1 is None else R1 - A1
        if dgd:  # D2 (alpha I - eta k k^T) - eta S2 = alpha D2 - eta ((D2 k) k^T + S2)
            kt = k[..., t, :]  # (...,i)
            proj = (D2 @ kt[..., :, None]) * kt[..., None, :]
            D2 = a * D2 - e * (proj + S2)
        else:
            D2 = a * D2 - e * S2
        D1 = a * D1 - e * S1
        R2 = D2 if A2 is None else A2 + D2
        R1 = D1 if A1 is None else A1 + D1
    return MemoryState(st.W1, st.W2, R1, R2, S1, S2)


def dgd_momentum_chunk(
    st: MemoryState,
    f: GradFactors,
    k: torch.Tensor,
    eta: torch.Tensor,
    alpha: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    dgd: bool,
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> MemoryState:
    """``dgd_momentum_loop``'s end-of-chunk R and S, exactly, in parallel over the chunk: no loop over tokens.

    f: the rank-1 gradient factors; k (...,L,i), eta/alpha/mask (...,L); the rest as in the loop. Only the
    end-of-chunk running weights and momenta are needed (every read in a chunk uses the boundary W).
    With t, s, n tokens 1..L of the chunk, D = R - A (anchor) or R, and the gradients g_s = e_s a_s^T
    (layer 1) and dz_s k_s^T (layer 2), masked tokens' factors zeroed::

        b_t = beta (unmasked) or 1 (masked);  rho_ts = prod_{s<r<=t} b_r = beta^(#unmasked in (s, t])
        lam_t = prod_{r>t} alpha_r, Aa = prod_r alpha_r;  Pb_t = rho_t0;  mu_ts = eta_t lam_t rho_ts (t >= s)
        S_L  = Pb_L S_0 + sum_s rho_Ls g_s                                           (momentum, a linear scan)
        D1_L = Aa D1_0 - Gam S1_0 - sum_s nu_s g1_s        gamma_t = eta_t lam_t Pb_t, Gam = sum_t gamma_t,
                                                           nu_s = sum_{t>=s} mu_ts
        W2 (dgd): M_t = alpha_t (I - beta'_t k_t k_t^T), beta'_t = eta_t / alpha_t; D2_L = D2_0 M_1..M_L -
        sum_t eta_t S2_t M_{t+1}..M_L. Every suffix product is lam_t (I - sum_{n>t} k_n z_n^T) with ONE set of
        vectors z (the UT / WY form of DeltaNet's chunked kernels, here for suffixes):
            z_t = beta'_t (k_t - sum_{n>t} (k_n . k_t) z_n)   i.e.  (I + diag(beta') triu(K K^T, 1)) Z = diag(beta') K
        D2_L = Aa (D2_0 - D2_0 K^T Z) - Gam S2_0 + S2_0 K^T diag(Gam_<n) Z - DZ^T diag(nu) K + DZ^T (Xi o G) Z
            Gam_<n = sum_{t<n} gamma_t, G = K K^T, Xi_sn = sum_{t=s}^{n-1} mu_ts (n > s, else 0)
        W2 (no dgd): the W1 line (Z = 0).
    Grouped as evaluated for L > 1: Y^T = Aa K D2_0^T - diag(Gam_<n) K S2_0^T (...,L,h) and, on the keys' side
    (*b-sized, shared by every memory), Kt = -diag(nu) K + (Xi o G) Z (*b,L,i); then the L-dependent part of
    D2_L is DZ^T Kt - Y^T Z, one product over 2L. L = 1 (the per-step form) has no Xi term and keeps the
    direct products. At a chunk boundary R2_0 is W2, and K W2^T is the factors' pre-activation (f.z).

    docs/learner.md has the derivation. Numerics: over one chunk (L <= the smallest CMS period, 24) the
    products of beta (>= 0) and alpha (>= alpha_min > 0) cannot underflow (0.9^24 ~ 0.08); beta^0 = 1 also
    for beta = 0, and rho is built from counts, never by dividing products; eta / alpha is safe since
    alpha >= alpha_min > 0. The triangular system is unit-diagonal and its off-diagonal entries are at most
    eta_max / alpha_min in size, so the solve is well conditioned. Float64 agrees with the loop to ~1e-15
    relative, float32 to ~4e-7 (tests/learner/test_hope_chunk.py).
    """
    # Every coefficient below depends only on k, eta, alpha and the mask, which all memories share: they
    # are computed once at those shapes (*b) and broadcast against the state's batch dims (e.g. (G, B)).
    keep = mask.to(k.dtype)  # (*b,L)
    # momentum: rho[t, s] = beta^(c_t - c_s) for s <= t, with c the running count of unmasked tokens
    c = torch.cumsum(keep, -1)  # (*b,L)
    rho = torch.tril(torch.pow(beta, c[..., :, None] - c[..., None, :]))  # (*b,L,L) [t,s]; tril drops s > t
    Pb = torch.pow(beta, c)  # (*b,L)  prod_{r<=t} b_r
    # retention: lam_t = prod_{r>t} alpha_r (a reverse cumulative product, no division)
    suffix = torch.cumprod(alpha.flip(-1), -1).flip(-1)  # (*b,L)  prod_{r>=t}
    Aa = suffix[..., 0, None, None]  # (*b,1,1)
    lam = F.pad(suffix[..., 1:], (0, 1), value=1.0)  # (*b,L)
    el = eta * lam  # (*b,L)
    gamma = el * Pb  # (*b,L)
    Gam = gamma.sum(-1)[..., None, None]  # (*b,1,1)
    Cmu = torch.cumsum(el[..., :, None] * rho, -2)  # (*b,L,L) [n,s] = sum_{t<=n} mu_ts
    PbL = Pb[..., -1, None, None]  # (*b,1,1)
    # masked tokens' gradients zeroed in the per-token weights, not in the (...,L,o) factors: w[..., s, 0] =
    # rho_Ls (momentum), w[..., s, 1] = -nu_s (weights), one (*b,L,2) tensor for both layers
    w = torch.stack([rho[..., -1, :], -Cmu[..., -1, :]], -1) * keep[..., None]  # (*b,L,2)
    A1, A2 = anchor if anchor is not None else (None, None)

    # Each line is one pass over a state-sized tensor: the sums over the chunk are (o x L)(L x h) products,
    # the momentum and retention terms fused multiply-adds.
    o = f.e.shape[-1]
    P1 = _outer_sum(_weighted(f.e, w), f.a)  # (...,2o,h): sum_s rho_Ls g1_s; -sum_s nu_s g1_s
    S1n = torch.addcmul(P1[..., :o, :], PbL, st.S1)
    R1n = torch.addcmul(torch.addcmul(P1[..., o:, :], Aa, st.R1), Gam, st.S1, value=-1)
    if A1 is not None:  # R = A + D: Aa D_0 = Aa R_0 + (1 - Aa) A - A
        R1n = torch.addcmul(R1n, 1 - Aa, A1)
    h, L = f.dz.shape[-1], k.shape[-2]
    if dgd and L > 1:  # the weights on the keys' side (*b,L,i); -sum_s nu_s g2_s joins the projector's product below
        S2n = torch.addcmul(_outer_sum(f.dz, w[..., :1] * k), PbL, st.S2)
        R2n = torch.addcmul(Aa * st.R2, Gam, st.S2, value=-1)
    else:
        P2 = _outer_sum(_weighted(f.dz, w), k)  # (...,2h,i)
        S2n = torch.addcmul(P2[..., :h, :], PbL, st.S2)
        R2n = torch.addcmul(torch.addcmul(P2[..., h:, :], Aa, st.R2), Gam, st.S2, value=-1)
    if A2 is not None:
        R2n = torch.addcmul(R2n, 1 - Aa, A2)
    if dgd:  # the projector's terms: R2 gets - Y Z
        bp = eta / alpha  # (*b,L)  beta'_t
        if L == 1:  # no later token: z_1 = beta'_1 k_1
            Z = bp[..., None] * k
        else:
            G = k @ k.mT  # (*b,L,L)
            U = bp[..., :, None] * torch.triu(G, 1)  # the unit diagonal is implied
            Z = torch.linalg.solve_triangular(U, bp[..., None] * k, upper=True, unitriangular=True)  # (*b,L,i)
        Gam_lt = torch.cumsum(gamma, -1) - gamma  # (*b,L) over n
        # Y^T = Aa K D2_0^T - diag(Gam_<n) K S2_0^T - (Xi o G)^T DZ   (...,L,h); keys on the left: a
        # (L x i)(i x h) product per stream is what the batched matmul does fast
        # K D2_0^T = K R2_0^T - K A2^T, the anchor's product shared by all streams (no state-sized R2 - A2).
        # At a chunk boundary the running weights are the boundary weights (the same tensor), so K R2_0^T is the
        # pre-activation the factors computed at k (f.z): no second product. Every chunk of a chunked call starts
        # there; the per-step form only on a chunk's first bar
        KR = f.z if st.R2 is st.W2 else k @ st.R2.mT
        KD = KR if A2 is None else KR - _keys_times_shared(k, A2)
        YT = Aa * KD - (k * Gam_lt[..., None]) @ st.S2.mT  # (...,L,h) without its (Xi o G) term
        if L == 1:
            R2n = _sub_outer_sum(R2n, YT, Z)
        else:
            # Y's (Xi o G) term moved to the keys' side, where it is (*b)-sized: DZ^T (Xi o G)^T Z. With the
            # gradient sum, R2 gets DZ^T Kt - YT^T Z, Kt = -diag(nu) K + (Xi o G)^T Z, as one product over 2L:
            # R2 - [YT; DZ]^T [Z; -Kt]. XiT (*b,L,L) [n,s] = Xi_sn, masked tokens' columns zeroed (their dz is not)
            XiT = F.pad(Cmu[..., :-1, :], (0, 0, 1, 0)) * keep[..., None, :]
            Kt = torch.addcmul((XiT * G).mT @ Z, w[..., 1:], k)  # (*b,L,i); w[..., 1] = -nu (masked: 0)
            R2n = _sub_outer_sum(R2n, torch.cat([YT, f.dz], -2), torch.cat([Z, -Kt], -2))
    return MemoryState(st.W1, st.W2, R1n, R2n, S1n, S2n)


def _weighted(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[x * w[..., 0], x * w[..., 1]] along the last dim: x (...,L,m), w (*b,L,2) -> (...,L,2m)."""
    return torch.cat([x * w[..., :1], x * w[..., 1:]], -1)


def _outer_sum(U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """sum_t u_t v_t^T = U^T V: (...,L,m), (...,L,n) -> (...,m,n). For L = 1 an elementwise outer product: a
    batched matrix product with inner size 1 is several times slower on the CPU."""
    if U.shape[-2] == 1:
        return U[..., 0, :, None] * V[..., 0, None, :]
    return U.mT @ V


def _sub_outer_sum(X: torch.Tensor, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """X - U^T V in one pass over X (a batched baddbmm, or a fused multiply-add for L = 1); U (...,L,m) has X's
    batch dims, V (*b,L,n) is broadcast over them."""
    if U.shape[-2] == 1:
        return torch.addcmul(X, U[..., 0, :, None], V[..., 0, None, :], value=-1)
    if torch.is_autocast_enabled(X.device.type):  # baddbmm would cast X itself, the fp32 state, to bf16
        return X - U.mT @ V
    lead = X.shape[:-2]
    V = V.expand(*lead, *V.shape[-2:])
    flat = (t.reshape(-1, *t.shape[-2:]) for t in (X, U.mT, V))
    return torch.baddbmm(*flat, alpha=-1).view(X.shape)


def _keys_times_shared(k: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """K A^T per stream, (...,L,h). k (B,L,i); A (...,1,h,i) shared by all streams (the anchor): one product per
    memory over all streams' keys, instead of broadcasting A into a copy per stream."""
    if A.dim() < 4 or A.shape[-3] != 1 or k.dim() != 3:
        return k @ A.mT
    B, L, i = k.shape
    out = k.reshape(B * L, i) @ A.mT  # (...,1,B*L,h)
    return out.unflatten(-2, (B, L)).squeeze(-4)  # (...,B,L,h)


@contextmanager
def memory_precision(mode: str, device_type: str) -> Iterator[None]:
    """The memories' matrix products in lower precision (``HopeConfig.mem_precision``), nothing else.

    "bf16": torch's autocast, so products run in bfloat16 while every sum they feed stays fp32 (elementwise
    ops promote to fp32: the running weights, momenta and anchors are never rounded to bf16; the caller casts
    generated keys, values and gates back to fp32). "tf32": NVIDIA's TF32 products for the duration (set and
    restored; a no-op elsewhere). "fp32": nothing.
    """
    if mode == "bf16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
    elif mode == "tf32" and device_type == "cuda":
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    else:
        yield
