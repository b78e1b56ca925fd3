"""Optimizers as memories (learner.optim): hand-computed two-step updates, the delta rule's limit, M3's slow
clock, and optimizer state surviving a whole Hope checkpoint."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from learner.hope.config import HopeConfig
from learner.hope.online import Hope
from learner.optim import LEVEL_OPTIMIZERS, TORCH_OPTIMIZERS, deep_momentum, delta_momentum, m3, momentum

torch.set_num_threads(1)


def two_steps(fn, g1, g2, state=None, **kw):
    d1, st = fn("w", g1, state or {}, **kw)
    d2, st = fn("w", g2, st, **kw)
    return d1, d2, st


def test_momentum_two_steps():
    d1, d2, _ = two_steps(momentum, torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]]))
    assert torch.allclose(d1, torch.tensor([[1.0, 2.0]]))
    assert torch.allclose(d2, torch.tensor([[3.9, 0.8]]))  # 0.9 [1, 2] + [3, -1]


def test_delta_momentum_two_steps_vector():
    # m2 = 0.9 m1 - 0.5 (m1 . ĝ2) ĝ2 + g2 with m1 = [1, 0], ĝ2 = [1, 1]/sqrt 2: removes [0.25, 0.25]
    d1, d2, _ = two_steps(delta_momentum, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(d1, torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(d2, torch.tensor([[1.65, 0.75]]))


def test_delta_momentum_decays_on_the_input_side():
    # arXiv side: m (beta I - lam ĝ^T ĝ). ĝ2^T ĝ2 = e0 e0^T (input column 0), which hits m1 = e00; the
    # NeurIPS side (ĝ2 ĝ2^T on the left = e1 e1^T) would leave m1 untouched and give [[0.9, 0], [1, 0]].
    g1 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    g2 = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    _, d2, _ = two_steps(delta_momentum, g1, g2)
    assert torch.allclose(d2, torch.tensor([[[0.4, 0.0], [1.0, 0.0]]]))


def test_delta_momentum_with_zero_decay_is_momentum():
    torch.manual_seed(0)
    sd, sm = {}, {}
    for _ in range(6):
        g = torch.randn(3, 5, 4)
        dd, sd = delta_momentum("w", g, sd, lam=0.0)
        dm, sm = momentum("w", g, sm)
        assert torch.allclose(dd, dm, atol=1e-6)
    # and the decay term matters when it is on
    dd, _ = delta_momentum("w", g, sd, lam=0.5)
    assert not torch.allclose(dd, dm, atol=1e-3)


def test_deep_momentum_two_steps():
    # one row u in R^2, one hidden unit, key map W2 = [[1, 0]] given in the state, W1 starts at 0
    W2 = torch.tensor([[[1.0, 0.0]]])  # (B=1, h=1, c=2)
    g1, g2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 1.0]])
    d1, d2, st = two_steps(deep_momentum, g1, g2, {"w.W2": W2}, hidden=1)
    a = math.tanh(0.6)  # tanh(W2 û1), û1 = [0.6, 0.8]
    # step 1: b1 = g1, W1 = 0.3 g1^T a, W2 unchanged (W1 was 0): d1 = g1 (1 + 0.3 a^2)
    assert torch.allclose(d1, g1 * (1 + 0.3 * a * a))
    # step 2: û2 = [0, 1], tanh(W2 û2) = 0, so W1 gets no new write; grad_W2 = (u2 . W1) û2 = 1.2 a [0, 1]
    w2 = torch.tensor([[[1.0, 0.01 * 1.2 * a]]])
    assert torch.allclose(st["w.W2"], w2)
    want = torch.tensor([[2.7, 4.6]]) + math.tanh(0.01 * 1.2 * a) * 0.27 * a * g1
    assert torch.allclose(d2, want, atol=1e-6)
    assert torch.allclose(st["w.b"], torch.tensor([[2.7, 4.6]]))  # the bias is plain momentum


def test_m3_two_steps():
    # a row vector's Newton-Schulz polar factor is exactly M / |M|; f = 2 makes step 2 a slow step
    g1, g2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    d1, d2, st = two_steps(m3, g1, g2, f=2)
    assert torch.allclose(d1, torch.tensor([[0.6 / 3, 0.8 / 4]]), atol=1e-6)  # (M1/|M1|) / sqrt(V/(1-b2))
    M1 = torch.tensor([3.7, 3.6])  # 0.9 g1 + g2
    V = 0.999 * 0.001 * g1[0] ** 2 + 0.001 * g2[0] ** 2
    O2 = torch.tensor([1.0, 1.0]) / math.sqrt(2)  # M2 = g1 + g2 = [4, 4]
    want = (M1 / M1.norm() + O2) / ((V / (1 - 0.999**2)).sqrt() + 1e-8)
    assert torch.allclose(d2[0], want, rtol=1e-5)
    assert torch.allclose(st["w.M2"], torch.tensor([[4.0, 4.0]]))
    assert torch.equal(st["w.acc"], torch.zeros(1, 2))


def test_m3_slow_momentum_changes_only_every_f_steps():
    torch.manual_seed(1)
    st: dict = {}
    f = 3
    prev_m2 = prev_o2 = None
    for t in range(1, 11):
        _, st = m3("w", torch.randn(2, 6, 4), st, f=f)
        if prev_m2 is not None:
            changed = not torch.equal(st["w.M2"], prev_m2)
            assert changed == (t % f == 0), t
            assert (not torch.equal(st["w.O2"], prev_o2)) == (t % f == 0), t
        prev_m2, prev_o2 = st["w.M2"].clone(), st["w.O2"].clone()
    # the orthogonalised slow momentum of a (6, 4) matrix is near its polar factor: singular values near 1
    sv = torch.linalg.svdvals(st["w.O2"])
    assert sv.max() <= 1.0 + 1e-5 and sv.min() > 0.9, sv


@pytest.mark.parametrize("name", sorted(LEVEL_OPTIMIZERS))
def test_streams_never_mix(name):
    torch.manual_seed(2)
    g = [torch.randn(3, 4, 5) for _ in range(3)]
    st, st0 = {}, {}
    for gi in g:
        d, st = LEVEL_OPTIMIZERS[name]("w", gi, st)
        d0, st0 = LEVEL_OPTIMIZERS[name]("w", gi[1:2], st0)
    assert torch.allclose(d[1:2], d0, atol=1e-5)


@pytest.mark.parametrize("name", ["momentum", "delta", "dmgd", "m3"])
def test_torch_form_matches_functional_and_state_dict_round_trips(name):
    torch.manual_seed(3)
    w0 = torch.randn(4, 3)
    grads = [torch.randn(4, 3) for _ in range(5)]
    p = torch.nn.Parameter(w0.clone())
    opt = TORCH_OPTIMIZERS[name]([p], lr=0.1)
    ref, st = w0.clone(), {}
    for i, g in enumerate(grads[:3]):
        p.grad = g.clone()
        opt.step()
        d, st = LEVEL_OPTIMIZERS[name]("p", g[None], st)
        ref = ref - 0.1 * d[0]
        assert torch.allclose(p.data, ref, atol=1e-6), i
    saved = copy.deepcopy(opt.state_dict())
    q = torch.nn.Parameter(p.data.clone())
    opt2 = TORCH_OPTIMIZERS[name]([q], lr=0.1)
    opt2.load_state_dict(saved)
    for g in grads[3:]:
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert torch.equal(p.data, q.data)


def _run(model: Hope, xs, ys, t0: int) -> list[torch.Tensor]:
    out = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        out.append(model.predict(x, torch.ones(x.shape[:2], dtype=torch.bool)))
        t = t0 + i
        model.learn(torch.tensor([t]), y, torch.ones_like(y, dtype=torch.bool))
    return out


@pytest.mark.parametrize("name", ["momentum", "delta", "dmgd", "m3"])
def test_optimizer_state_survives_hope_checkpoint(name):
    torch.manual_seed(4)
    cfg = HopeConfig(
        n_features=4, d_model=8, d_hidden=8, cms_hidden=8, chunk_other=4, chunk_mem=4, cms_periods=(4, 8),
        cms_optimizer=name,
    )  # fmt: skip
    model = Hope(cfg)
    model.reset(2)
    xs = [torch.randn(2, 1, 4) for _ in range(40)]
    ys = [torch.randn(2, 1, 3) for _ in range(40)]
    _run(model, xs[:20], ys[:20], 0)
    saved = copy.deepcopy(model.state_dict())
    assert all(lvl["opt"] for lvl in saved["cms"]), "every level's optimizer memory is in the checkpoint"
    after = _run(model, xs[20:], ys[20:], 20)
    other = Hope(cfg)
    other.load_state_dict(saved)
    restored = _run(other, xs[20:], ys[20:], 20)
    for a, b in zip(after, restored, strict=True):
        assert torch.equal(a, b)
    for la, lb in zip(model.state.cms, other.state.cms, strict=True):
        assert la.opt.keys() == lb.opt.keys()
        for k in la.opt:
            assert torch.equal(la.opt[k], lb.opt[k]), k
    # the memory moved after the checkpoint, so an equal ending is not a trivial one
    moved = model.state_dict()["cms"][0]["opt"]
    assert any(not torch.equal(moved[k], saved["cms"][0]["opt"][k]) for k in moved)


@pytest.mark.parametrize("name", ["momentum", "delta", "dmgd", "m3"])
def test_torch_form_runs_under_a_scheduler(name):
    # schedulers add keys (initial_lr) to the param groups; they must not reach the optimizer function
    p = torch.nn.Parameter(torch.ones(3, 2))
    opt = TORCH_OPTIMIZERS[name]([p], lr=0.1, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5)
    p.grad = torch.ones(3, 2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert (p.data < 1).all()
