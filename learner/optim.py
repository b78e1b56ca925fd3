"""Optimizers as associative memories of gradients (Nested Learning arXiv §4.4 and §7.2).

References: Behrouz et al., "Nested Learning: The Illusion of Deep Learning Architectures" (arXiv:2512.24695v1,
eqs. 32-53 and Algorithm 1; NeurIPS 2025 camera-ready §2.3). Our notes: ../shared/reference/nested_learning.md §1(b).

Every optimizer exists once, in a functional per-stream form, and twice in use:

- ``LEVEL_OPTIMIZERS[name](pname, g, state) -> (direction, state)``: what a CMS level calls at its update
  (learner.hope.model.cms_apply_due). ``g`` is (B, ...) with a leading stream dimension; every operation acts
  on each stream alone (matrices are batched, streams are never mixed). ``state`` is the level's ``opt`` dict of
  tensors, the optimizer's memory, saved whole in the checkpoint. The caller multiplies by the learning rate,
  clips and *subtracts* the direction.
- ``TORCH_OPTIMIZERS[name]``: a :class:`torch.optim.Optimizer` that runs the same function with B = 1 on each
  parameter, for pre-training (``PretrainConfig.optimizer``).

A parameter of shape (B, *s) is seen as a batch of matrices (B, r, c): a vector is one row (1, n), a matrix
stays (out, in), higher ranks fold their leading dims into rows. The optimizers:

- ``sgd``: the direction is the gradient (eq. 71 as written).
- ``momentum``: ``m <- beta m + g``, the dot-product memory of gradients ``min_m <m, g>`` (eqs. 32-37).
- ``delta``: delta-rule momentum, the L2 memory ``min_m ||m g^T - P||^2`` (eqs. 48-49)::

      m <- m (beta I - lam ĝ^T ĝ) + g,        ĝ = g / ||g||_F   (per stream)

  The state decays along the current gradient direction: a rank-1 (vector) gradient removes ``lam (m.ĝ) ĝ``.
  The two paper versions disagree on the side of the factor: arXiv eq. 49 writes ``m_i (alpha - ∇L ∇L^T)``
  (right side), NeurIPS writes ``(alpha I - ∇L^T ∇L) m_i`` (left side). For a non-square (out, in) gradient
  neither product conforms as printed; the right-side Gram ``m (g^T g)`` (in, in) is what the gradient of
  eq. 48's objective ``||m ∇L^T - P||^2`` with respect to m gives (m and ∇L of the same shape), so we
  implement the arXiv side, with the Gram built on the input dimension. CHOICE: the gradient is normalised
  (``ĝ``) so that ``beta I - lam ĝ^T ĝ`` has eigenvalues in [beta - lam, beta]: a contraction for
  0 <= lam <= beta, like DGD's unit keys (pitfalls §4.1). P = I (value-less). ``lam = 0`` is ``momentum``.
- ``dmgd``: deep momentum (eq. 50). The momentum is an MLP of the gradient, applied to each row u of g::

      phi(u) = b + W1 tanh(W2 û),        û = u / ||u||
      b  <- alpha b + u                                    (eta = 1 on the bias)
      W1 <- alpha W1 + eta / (r h) sum_rows u tanh(W2 û)^T   (averaged over the r rows and h hidden units)
      W2 <- W2 + eta_k grad_W2 <phi(u), u>
      direction = phi_{i+1}(g_i)

  CHOICE (eq. 50 gives the form, not the inner objective ``L^(2)(m; u, 1)``): the dot-product objective of
  plain momentum, so the bias b *is* plain momentum (b <- alpha b + g) and the MLP adds a kernel recall:
  ``W1 tanh(W2 û)`` returns past gradients weighted by how their directions resemble the current one. W1
  starts at zero (so dmgd starts as momentum), W2 at fixed random features; W2 has no decay (it is the key
  map, as DGD's W2) and its step is clipped to norm 1 per stream.
- ``m3``: Multi-scale Momentum Muon, Algorithm 1::

      M1 <- beta1 M1 + g;   V <- beta2 V + (1 - beta2) g^2;   acc <- acc + g
      every f steps: M2 <- beta3 M2 + acc; acc <- 0; O2 <- NS_T(M2)        (the slow momentum)
      direction = (NS_T(M1) + alpha O2) / (sqrt(V / (1 - beta2^t)) + eps)

  CHOICE: the transcribed Algorithm 1 writes undecayed sums ``M1 <- M1 + beta1 g`` (and likewise V, M2), which
  never forget; we decay them as Adam does, and bias-correct V. NS_T is the cubic Newton-Schulz iteration
  ``O <- 1.5 O - 0.5 O O^T O`` from a Frobenius-normalised start (the paper reads it as GD on ||O^T O - I||^2,
  eqs. 43-44); it converges to the polar factor, and a row vector's is exactly ``M / ||M||``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch

State = dict[str, torch.Tensor]
LevelOptimizer = Callable[[str, torch.Tensor, State], tuple[torch.Tensor, State]]


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, r, c): a vector is one row, a matrix stays, higher ranks fold leading dims into rows."""
    if t.dim() == 1:
        return t.view(t.shape[0], 1, 1)
    if t.dim() == 2:
        return t.unsqueeze(1)
    return t.reshape(t.shape[0], -1, t.shape[-1])


def newton_schulz(m: torch.Tensor, steps: int = 10, eps: float = 1e-7) -> torch.Tensor:
    """Batched cubic Newton-Schulz orthogonalisation of (B, r, c) matrices (NL eqs. 43-44)."""
    o = m / (m.flatten(1).norm(dim=1).view(-1, 1, 1) + eps)  # singular values in [0, 1]
    transpose = o.shape[-2] > o.shape[-1]
    if transpose:
        o = o.transpose(-1, -2)
    for _ in range(steps):
        o = 1.5 * o - 0.5 * (o @ o.transpose(-1, -2)) @ o
    return o.transpose(-1, -2) if transpose else o


# ----------------------------------------------------------------------------- functional, per stream
def sgd(name: str, g: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    return g, state


def momentum(name: str, g: torch.Tensor, state: State, beta: float = 0.9) -> tuple[torch.Tensor, State]:
    m = state.get(f"{name}.m")
    m = g.clone() if m is None else beta * m + g
    return m, {**state, f"{name}.m": m}


def delta_momentum(
    name: str, g: torch.Tensor, state: State, beta: float = 0.9, lam: float = 0.5, eps: float = 1e-12
) -> tuple[torch.Tensor, State]:
    """eqs. 48-49: m <- m (beta I - lam ĝ^T ĝ) + g, per stream (right-side Gram, see the module docstring)."""
    m = state.get(f"{name}.m")
    if m is None:
        m = g.clone()
    else:
        G = _rows(g)
        Gh = G / (G.flatten(1).norm(dim=1).view(-1, 1, 1) + eps)  # (B, r, c)
        M = _rows(m)
        M = beta * M - lam * (M @ Gh.transpose(-1, -2)) @ Gh + G  # (B, r, c) @ (B, c, r) @ (B, r, c)
        m = M.reshape(g.shape)
    return m, {**state, f"{name}.m": m}


def _dmgd_init_w2(B: int, h: int, c: int, like: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1009 * h + c)  # fixed random key features, the same for every stream
    w2 = torch.randn(h, c, generator=gen) / c**0.5
    return w2.to(device=like.device, dtype=like.dtype).expand(B, h, c).clone()


def deep_momentum(
    name: str,
    g: torch.Tensor,
    state: State,
    alpha: float = 0.9,
    eta: float = 0.3,
    eta_key: float = 0.01,
    hidden: int = 8,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, State]:
    """eq. 50: an MLP momentum phi(u) = b + W1 tanh(W2 û) trained by GD on <phi(u), u> (module docstring)."""
    U = _rows(g)  # (B, r, c)
    B, r, c = U.shape
    b = state.get(f"{name}.b")
    b = torch.zeros_like(U) if b is None else _rows(b)
    W1 = state.get(f"{name}.W1", torch.zeros(B, c, hidden, device=g.device, dtype=g.dtype))  # (B, c, h)
    W2 = state.get(f"{name}.W2")
    W2 = _dmgd_init_w2(B, hidden, c, g) if W2 is None else W2  # (B, h, c)
    Uh = U / (U.norm(dim=-1, keepdim=True) + eps)  # unit keys, per row
    a = torch.tanh(Uh @ W2.transpose(-1, -2))  # (B, r, h)
    # gradients of J = sum_rows <phi(u), u> at the current memory
    gW1 = U.transpose(-1, -2) @ a / (r * hidden)  # (B, c, h), averaged over rows and hidden units
    gW2 = ((U @ W1) * (1 - a * a)).transpose(-1, -2) @ Uh  # (B, h, c)
    stepW2 = eta_key * gW2
    n = stepW2.flatten(1).norm(dim=1).view(-1, 1, 1)
    stepW2 = stepW2 * (1.0 / (n + eps)).clamp(max=1.0)
    b = alpha * b + U  # eta = 1 on the bias: plain momentum
    W1 = alpha * W1 + eta * gW1
    W2 = W2 + stepW2
    out = b + torch.tanh(Uh @ W2.transpose(-1, -2)) @ W1.transpose(-1, -2)  # phi_{i+1}(u_i), (B, r, c)
    new = {**state, f"{name}.b": b.reshape(g.shape), f"{name}.W1": W1, f"{name}.W2": W2}
    return out.reshape(g.shape), new


def m3(
    name: str,
    g: torch.Tensor,
    state: State,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float = 0.9,
    alpha: float = 1.0,
    f: int = 4,
    ns_steps: int = 10,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, State]:
    """Algorithm 1 (M3): fast M1 and slow M2 momenta, each orthogonalised, over an Adam second moment."""
    G = _rows(g)
    z = torch.zeros_like(G)
    M1 = _rows(state.get(f"{name}.M1", z))
    M2 = _rows(state.get(f"{name}.M2", z))
    O2 = _rows(state.get(f"{name}.O2", z))
    acc = _rows(state.get(f"{name}.acc", z))
    V = _rows(state.get(f"{name}.V", z))
    t = state.get(f"{name}.t", torch.zeros(G.shape[0], device=g.device, dtype=g.dtype)) + 1  # (B,)
    M1 = beta1 * M1 + G
    V = beta2 * V + (1 - beta2) * G * G
    acc = acc + G
    due = (torch.remainder(t, f) == 0).view(-1, 1, 1)  # per stream, though every stream shares the clock
    M2 = torch.where(due, beta3 * M2 + acc, M2)
    O2 = torch.where(due, newton_schulz(M2, ns_steps), O2)
    acc = torch.where(due, torch.zeros_like(acc), acc)
    vhat = V / (1 - beta2 ** t.view(-1, 1, 1))
    d = (newton_schulz(M1, ns_steps) + alpha * O2) / (vhat.sqrt() + eps)
    new = {
        **state,
        f"{name}.M1": M1.reshape(g.shape),
        f"{name}.M2": M2.reshape(g.shape),
        f"{name}.O2": O2.reshape(g.shape),
        f"{name}.acc": acc.reshape(g.shape),
        f"{name}.V": V.reshape(g.shape),
        f"{name}.t": t,
    }
    return d.reshape(g.shape), new


LEVEL_OPTIMIZERS: dict[str, LevelOptimizer] = {
    "sgd": sgd,
    "momentum": momentum,
    "delta": delta_momentum,
    "dmgd": deep_momentum,
    "m3": m3,
}


# ----------------------------------------------------------------------------- torch.optim form
class FunctionalOptimizer(torch.optim.Optimizer):
    """Runs a functional optimizer on each parameter as one stream (B = 1): p <- p - lr (direction + wd p).

    Hyper-parameters other than ``lr`` and ``weight_decay`` go to the function. The state of parameter p is
    the function's own dict (keys ``p.<slot>``), so ``state_dict()`` / ``load_state_dict()`` carry it whole.

    >>> p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = DeltaMomentum([p], lr=0.1)
    >>> p.grad = torch.tensor([1.0, 0.0]); opt.step(); p.data
    tensor([ 0.9000, -2.0000])
    """

    fn: LevelOptimizer = staticmethod(sgd)

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.0, **hyper):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, **hyper))
        self.hyper_names = tuple(hyper)  # what goes to the function (schedulers add keys such as initial_lr)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hyper = {k: group[k] for k in self.hyper_names}
            fn = functools.partial(type(self).fn, **hyper)
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = {k: v for k, v in self.state[p].items()}
                d, st = fn("p", p.grad.unsqueeze(0), st)
                self.state[p].update(st)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.sub_(group["lr"] * d.squeeze(0))
        return loss


class Momentum(FunctionalOptimizer):
    fn = staticmethod(momentum)


class DeltaMomentum(FunctionalOptimizer):
    fn = staticmethod(delta_momentum)


class DeepMomentum(FunctionalOptimizer):
    fn = staticmethod(deep_momentum)


class M3(FunctionalOptimizer):
    fn = staticmethod(m3)


TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "momentum": Momentum,
    "delta": DeltaMomentum,
    "dmgd": DeepMomentum,
    "m3": M3,
}
