"""The parallel chunk form of the memories' write (memory.dgd_momentum_chunk) against the token loop it replaces.

Tolerances, measured on random inputs (masks, anchors, dgd on/off, beta 0 and 0.9, L = 1..24): float64 agrees
with the loop to ~1e-15 relative (asserted at 1e-10), float32 to ~4e-7 (asserted at 1e-5); outer gradients
through the write agree to ~1e-15 in float64.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learner.hope import memory, titans
from learner.hope.config import HopeConfig
from learner.hope.memory import MemoryState, dgd_momentum_chunk, dgd_momentum_loop, mem_grad_factors
from learner.hope.online import Hope
from learner.stream import run_stream
from tests.learner.synthetic import synthetic_panel

torch.set_num_threads(1)


def _case(dtype, L, masked, lead=(3,), shared=(), o=5, h=6, i=7, seed=0):
    """A random state mid-chunk (R != W, S != 0), keys, gates and a mask. ``shared``: the batch dims that
    k, eta, alpha and the mask have (the packed layout shares them over the memory dim)."""
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=dtype)

    W1, W2 = r(*lead, o, h), r(*lead, h, i) / 3
    st = MemoryState(
        W1, W2, W1 + 0.1 * r(*lead, o, h), W2 + 0.1 * r(*lead, h, i), 0.1 * r(*lead, o, h), 0.1 * r(*lead, h, i)
    )
    b = shared if shared else lead
    k = F.normalize(r(*b, L, i), dim=-1)
    v_hat = r(*lead, L, o)
    mask = torch.rand(*b, L, generator=g) > 0.3 if masked else torch.ones(*b, L, dtype=torch.bool)
    eta = torch.where(mask, 0.05 * torch.rand(*b, L, generator=g, dtype=dtype), 0.0)
    alpha = torch.where(mask, 0.9 + 0.1 * torch.rand(*b, L, generator=g, dtype=dtype), 1.0)
    return st, k, v_hat, eta, alpha, mask


def _loop(st, f, k, eta, alpha, mask, beta, dgd, anchor=None):
    lead = st.R1.shape[:-2]

    def ex(t, tail):  # shared inputs broadcast to the state's batch dims, as the loop wants them
        return t.expand(*lead, *t.shape[t.dim() - tail :])

    kx = ex(k, 2)
    g1, g2 = f.materialise(kx)
    return dgd_momentum_loop(st, g1, g2, kx, ex(eta, 1), ex(alpha, 1), ex(mask, 1), beta, dgd, anchor)


def _rel(a: MemoryState, b: MemoryState) -> float:
    return max(
        float((getattr(a, n) - getattr(b, n)).abs().max() / getattr(b, n).abs().max()) for n in ("R1", "R2", "S1", "S2")
    )


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_parallel_chunk_equals_the_token_loop(dtype, tol):
    for L, dgd, beta, anchored, masked in itertools.product(
        (1, 2, 8, 24), (True, False), (0.0, 0.9), (True, False), (True, False)
    ):
        st, k, v_hat, eta, alpha, mask = _case(dtype, L, masked, seed=L)
        anchor = (st.W1 + 0.05, st.W2 - 0.05) if anchored else None
        f = mem_grad_factors(st.W1, st.W2, k, v_hat, clip=0.5)  # the clip fires on some tokens
        err = _rel(
            dgd_momentum_chunk(st, f, k, eta, alpha, mask, beta, dgd, anchor),
            _loop(st, f, k, eta, alpha, mask, beta, dgd, anchor),
        )
        assert err < tol, (L, dgd, beta, anchored, masked, err)


@pytest.mark.parametrize("dgd", [True, False])
def test_packed_layout_shares_keys_and_gates_and_anchors_broadcast(dgd):
    """State (G, B, ...), keys/gates/mask (B, ...), anchors (G, 1, ...): what titans passes."""
    G, B = 5, 4
    st, k, _, eta, alpha, mask = _case(torch.float64, 8, True, lead=(G, B), shared=(B,), o=6, h=6, i=6)
    v_hat = torch.randn(G, B, 8, 6, dtype=torch.float64)
    anchor = (torch.randn(G, 1, 6, 6, dtype=torch.float64), torch.randn(G, 1, 6, 6, dtype=torch.float64))
    f = mem_grad_factors(st.W1, st.W2, k, v_hat, clip=1.0)
    assert (
        _rel(
            dgd_momentum_chunk(st, f, k, eta, alpha, mask, 0.9, dgd, anchor),
            _loop(st, f, k, eta, alpha, mask, 0.9, dgd, anchor),
        )
        < 1e-10
    )


@pytest.mark.parametrize("anchored", [True, False])
def test_at_a_chunk_boundary_the_write_reuses_the_factors_product(anchored):
    """R2 is W2 (the same tensor, as after every chunk boundary): the write takes K R2^T from the factors'
    pre-activation f.z instead of a second product. Same numbers as with the product (R a copy of W) and as
    the loop; and f.z is what it reads there (zeroing it changes the boundary state's write, not the copy's)."""
    for L in (1, 8):
        st, k, v_hat, eta, alpha, mask = _case(torch.float64, L, True, seed=40 + L)
        at = MemoryState(st.W1, st.W2, st.W1, st.W2, st.S1, st.S2)
        other = MemoryState(st.W1, st.W2, st.W1.clone(), st.W2.clone(), st.S1, st.S2)
        anchor = (st.W1 + 0.05, st.W2 - 0.05) if anchored else None
        f = mem_grad_factors(st.W1, st.W2, k, v_hat, clip=0.5)
        a = dgd_momentum_chunk(at, f, k, eta, alpha, mask, 0.9, True, anchor)
        assert _rel(a, dgd_momentum_chunk(other, f, k, eta, alpha, mask, 0.9, True, anchor)) < 1e-12
        assert _rel(a, _loop(at, f, k, eta, alpha, mask, 0.9, True, anchor)) < 1e-10
        blind = dataclasses.replace(f, z=torch.zeros_like(f.z))
        assert _rel(dgd_momentum_chunk(at, blind, k, eta, alpha, mask, 0.9, True, anchor), a) > 1e-3
        assert _rel(dgd_momentum_chunk(other, blind, k, eta, alpha, mask, 0.9, True, anchor), a) < 1e-12


def test_a_stream_restored_at_a_chunk_boundary_repeats_it_bit_for_bit():
    """The write reuses the factors' product where a chunk starts at a boundary (R2 is W2); a restore there makes
    them one tensor again, so the restored stream takes the same path and repeats the uninterrupted one exactly
    (the service re-emits identical signals after a crash), as it does from mid-chunk."""
    fp = synthetic_panel(T=80, B=3, F=6, seed=5)
    cfg = HopeConfig(n_features=6)  # the default sizes: products large enough for the BLAS kernels (rounding)
    torch.manual_seed(0)
    net = Hope(cfg).net
    for cut in (24, 29):  # a boundary, mid-chunk
        a = Hope(cfg, net=copy.deepcopy(net))
        a.reset(3)
        run_stream(a, fp, 0, cut, chunk=1)
        b = Hope(cfg, net=copy.deepcopy(net))
        b.load_state_dict(copy.deepcopy(a.state_dict()))
        pa = run_stream(a, fp, cut, chunk=1, clock0=0).preds
        pb = run_stream(b, fp, cut, chunk=1, clock0=0).preds
        assert np.array_equal(pa, pb, equal_nan=True), cut


def test_outer_gradients_through_the_write_equal_the_loop():
    """Pre-training back-propagates through writes: the parallel form must give the loop's gradients."""
    torch.manual_seed(1)
    d = torch.float64
    leaves = {
        "W1": torch.randn(3, 5, 6, dtype=d),
        "W2": torch.randn(3, 6, 7, dtype=d) / 3,
        "k": torch.randn(3, 8, 7, dtype=d),
        "v": torch.randn(3, 8, 5, dtype=d),
        "eta": torch.randn(3, 8, dtype=d),
        "alpha": torch.randn(3, 8, dtype=d),
    }
    for t in leaves.values():
        t.requires_grad_(True)
    mask = torch.rand(3, 8) > 0.3
    w1, w2 = torch.randn(3, 5, 6, dtype=d), torch.randn(3, 6, 7, dtype=d)

    def objective(parallel: bool) -> torch.Tensor:
        p = leaves
        k = F.normalize(p["k"], dim=-1)
        eta = torch.where(mask, 0.05 * torch.sigmoid(p["eta"]), 0.0)
        alpha = torch.where(mask, 0.9 + 0.1 * torch.sigmoid(p["alpha"]), 1.0)
        st = MemoryState(p["W1"], p["W2"], 1.1 * p["W1"], 0.9 * p["W2"], 0.1 * p["W1"], 0.1 * p["W2"])
        f = mem_grad_factors(p["W1"], p["W2"], k, p["v"], clip=0.5)
        anchor = (p["W1"].detach(), p["W2"].detach())
        write = dgd_momentum_chunk if parallel else _loop
        n = write(st, f, k, eta, alpha, mask, 0.9, True, anchor)
        return (n.R1 * w1).sum() + (n.R2 * w2).sum() + (n.S1 * w1).sum() + (n.S2 * w2).sum()

    ga = torch.autograd.grad(objective(True), list(leaves.values()))
    gb = torch.autograd.grad(objective(False), list(leaves.values()))
    for name, a, b in zip(leaves, ga, gb, strict=True):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-10, name


def test_hope_predictions_equal_with_the_token_loop(monkeypatch):
    """Hope over a few hundred bars (gaps included), chunked and per-step: the parallel write and the token
    loop give the same forecasts (float32)."""
    fp = synthetic_panel(T=240, B=3, F=6, seed=11)
    fp.mask[50:63, 1] = False
    cfg = HopeConfig(n_features=6, d_model=8, d_hidden=8, cms_hidden=8, cms_periods=(24, 48), cms_lr=(0.05, 0.02))
    torch.manual_seed(0)
    net = Hope(cfg).net
    preds = {}
    for form in ("parallel", "loop"):
        if form == "loop":
            monkeypatch.setattr(titans, "dgd_momentum_chunk", _loop)
        for chunk in (1, 8, 24):
            m = Hope(cfg, net=copy.deepcopy(net))
            m.reset(3)
            preds[form, chunk] = run_stream(m, fp, chunk=chunk).preds
    ref = preds["loop", 1]
    for key, p in preds.items():
        np.testing.assert_allclose(p, ref, rtol=1e-5, atol=2e-6, err_msg=str(key))
    assert memory.dgd_momentum_chunk is not _loop  # the patch stayed local to titans


def test_bf16_memories_stay_within_the_stated_tolerance():
    """mem_precision="bf16": the memories' products in bfloat16, their state, gates and the CMS in fp32. On the
    shipped net over 960 real bars x 4 assets (replay calls of 24) the forecasts moved by at most 0.013 (of
    forecasts up to 0.92) and 0.3-0.5% relative RMS per output when this was written; asserted: 0.04 and 2%."""
    from pathlib import Path

    from continuum.timeframes import parse_date
    from ingest.replay import load_panel
    from learner.checkpoint import load_pretrained
    from learner.features import build_features

    repo = Path(__file__).resolve().parents[2]
    net, _ = load_pretrained(repo / "data" / "hope_pretrained.pt")
    panel = load_panel(
        repo / "data" / "binance",
        symbols=["BTC/USDT", "ETH/USDT", "XRP/USDT", "LTC/USDT"],
        start=parse_date("2019-03-01"),
        end=parse_date("2019-04-10"),
    )
    fp = build_features(panel)
    preds = {}
    for prec in ("fp32", "bf16"):
        m = Hope(net.cfg.with_(mem_precision=prec), copy.deepcopy(net))
        m.reset(len(fp.symbols))
        preds[prec] = run_stream(m, fp, chunk=24).preds
    a, b = preds["fp32"], preds["bf16"]
    assert np.all(np.isfinite(b[np.isfinite(a)]))
    assert np.nanmax(np.abs(a - b)) < 0.04
    rel = np.sqrt(np.nanmean((a - b) ** 2, axis=(0, 1))) / np.sqrt(np.nanmean(a**2, axis=(0, 1)))
    assert np.all(rel < 0.02), rel
