"""Hope over long streams: anchored retention, every CMS period honoured, pre-training with carried state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learner.hope.config import HopeConfig
from learner.hope.memory import MemoryState, dgd_momentum_loop, mem_grads
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.pretrain import PretrainConfig, pretrain
from tests.learner.synthetic import synthetic_panel

torch.set_num_threads(1)


def _cfg(**kw) -> HopeConfig:
    base = dict(n_features=6, d_model=8, d_hidden=8, cms_hidden=8, chunk_other=4, chunk_mem=4)
    return HopeConfig(**{**base, "cms_periods": (8, 16), "cms_lr": (0.05, 0.02), **kw})


def test_anchored_retention_forgets_toward_the_initial_memory_not_zero():
    """With no gradient, alpha < 1 pulls the running weights back to the anchor (the meta-learned init)."""
    torch.manual_seed(0)
    A1, A2 = torch.randn(1, 3, 2, dtype=torch.float64), torch.randn(1, 2, 3, dtype=torch.float64)
    R1, R2 = A1 + 1.0, A2 - 1.0  # what earlier writes left
    st = MemoryState(A1, A2, R1, R2, torch.zeros_like(A1), torch.zeros_like(A2))
    n = 400
    k = F.normalize(torch.randn(1, n, 3, dtype=torch.float64), dim=-1)
    zeros1, zeros2 = torch.zeros(1, n, 3, 2, dtype=torch.float64), torch.zeros(1, n, 2, 3, dtype=torch.float64)
    eta, alpha = torch.full((1, n), 0.05, dtype=torch.float64), torch.full((1, n), 0.98, dtype=torch.float64)
    mask = torch.ones(1, n, dtype=torch.bool)
    anchored = dgd_momentum_loop(st, zeros1, zeros2, k, eta, alpha, mask, 0.9, True, anchor=(A1, A2))
    plain = dgd_momentum_loop(st, zeros1, zeros2, k, eta, alpha, mask, 0.9, True)
    assert (anchored.R1 - A1).abs().max() < 1e-3 and (anchored.R2 - A2).abs().max() < 1e-3
    assert plain.R1.abs().max() < 1e-3  # the first landing's decay forgets toward zero instead
    assert (plain.R1 - A1).abs().max() > 0.1


def test_anchored_memory_stays_bounded_under_constant_surprise():
    """Writes of clamped size forever: the written part stays within eta |S| / (1 - alpha), whatever the length."""
    torch.manual_seed(1)
    d, h, n = 4, 4, 3000
    A1, A2 = 0.1 * torch.randn(1, d, h), torch.randn(1, h, d) / 2
    st = MemoryState(A1, A2, A1.clone(), A2.clone(), torch.zeros_like(A1), torch.zeros_like(A2))
    k = F.normalize(torch.randn(1, n, d), dim=-1)
    v = 5 * torch.randn(1, n, d)  # targets the memory can never fit: constant surprise
    eta, alpha, beta = 0.02, 0.99, 0.9
    sizes = []
    for s in range(0, n, 8):
        g1, g2, _, _ = mem_grads(st.R1, st.R2, k[:, s : s + 8], v[:, s : s + 8], clip=1.0)
        m = torch.ones(1, 8, dtype=torch.bool)
        e, a = torch.full((1, 8), eta), torch.full((1, 8), alpha)
        st = dgd_momentum_loop(st, g1, g2, k[:, s : s + 8], e, a, m, beta, True, anchor=(A1, A2))
        sizes.append(float((st.R1 - A1).norm() + (st.R2 - A2).norm()))
    bound = 2 * eta * (1.0 / (1 - beta)) / (1 - alpha)  # two layers, |S| <= clip / (1 - beta)
    assert max(sizes) <= bound
    assert max(sizes[-50:]) <= 1.5 * max(sizes[len(sizes) // 2 : len(sizes) // 2 + 50])  # no drift late on


def test_a_call_crossing_any_cms_period_is_refused():
    """Periods 16 and 24 with 16-bar calls: the 24-bar level would miss bars 24 and 72; refuse, never skip."""
    cfg = _cfg(cms_periods=(16, 24), cms_lr=(0.01, 0.01), chunk_other=8, chunk_mem=8)
    m = Hope(cfg, HopeNet(cfg))
    m.reset(1)
    x, mask = torch.zeros(1, 16, cfg.n_features), torch.ones(1, 16, dtype=torch.bool)
    m.predict(x, mask)  # bars 0..15
    with pytest.raises(ValueError, match="period 24"):
        m.predict(x, mask)  # bars 16..31 would cross 24
    stepped = []
    m.reset(1)
    for _ in range(0, 96, 8):
        m.predict(x[:, :8], mask[:, :8])
        m.learn(torch.arange(0), torch.zeros(1, 0, 3), torch.zeros(1, 0, 3, dtype=torch.bool))
        if m.state.step % 24 == 0:
            stepped.append(m.state.step)
    assert stepped == [24, 48, 72, 96]


def test_carried_pretraining_runs_long_streams_and_steps_every_level():
    """carry=6 windows of 48 bars: one stream spans 288 bars, the clock runs on, the 96-bar level steps in
    pre-training (it never could inside one 48-bar window), and every parameter stays finite."""
    fp = synthetic_panel(T=2000, B=2, seed=3)
    cfg = HopeConfig(n_features=fp.x.shape[2], d_model=8, d_hidden=8, cms_hidden=8, cms_periods=(24, 96))
    stepped = []
    orig = HopeNet.cms_apply_due

    def spy(self, levels, step):
        orig(self, levels, step)
        stepped.append((step, [float(lvl.last_update_norm.max()) for lvl in levels]))

    HopeNet.cms_apply_due = spy
    try:
        net, losses = pretrain(cfg, fp, 1800, PretrainConfig(steps=6, seq_len=48, batch=2, carry=6), progress=False)
    finally:
        HopeNet.cms_apply_due = orig
    steps = [s for s, _ in stepped]
    assert max(steps) == 6 * 48  # one stream's clock ran over all six windows
    slow = [norms[1] for s, norms in stepped if s % 96 == 0 and s > 0]
    assert len(slow) == 3 and all(n > 0 for n in slow)
    assert all(np.isfinite(losses)) and all(torch.isfinite(p).all() for p in net.parameters())


def test_carried_pretraining_learns_each_realised_target_once_across_window_edges():
    """Targets of forecasts made near a window's end are realised in the next window: counted once, not lost."""
    fp = synthetic_panel(T=1500, B=1, seed=4)
    cfg = HopeConfig(n_features=fp.x.shape[2], d_model=8, d_hidden=8, cms_hidden=8, cms_periods=(24,))
    seen = []
    orig = HopeNet.cms_accumulate

    def spy(self, levels, h, y, ymask):
        seen.append(int(ymask.sum()))
        orig(self, levels, h, y, ymask)

    HopeNet.cms_accumulate = spy
    try:
        pretrain(cfg, fp, 1400, PretrainConfig(steps=4, seq_len=48, batch=1, carry=4, seed=2), progress=False)
    finally:
        HopeNet.cms_accumulate = orig
    # 4 windows x 48 bars = 192 forecasts; ret_1h realised for all but the last 1, the 24h targets for all but
    # the last 24 (when every bar is present): a target spanning a window edge is neither dropped nor doubled
    total = sum(seen)
    assert total <= 192 + 2 * 168
    assert total >= 0.9 * (191 + 2 * 168)


def test_pretraining_never_reads_past_the_cut_off_even_when_streams_must_shrink():
    """carry=24 windows of 48 bars cannot fit in 400 bars: streams get shorter; bars (and targets) after the
    cut-off are poisoned with NaN, so a single one read would make the loss or a weight NaN."""
    fp = synthetic_panel(T=900, B=2, seed=5)
    until = 400
    fp.x[until:] = np.nan  # bars at or after the cut-off
    fp.y[until - 24 :] = np.nan  # targets realised after it (a 24h target of bar t is known at t + 24)
    cfg = HopeConfig(n_features=fp.x.shape[2], d_model=8, d_hidden=8, cms_hidden=8, cms_periods=(24,))
    net, losses = pretrain(cfg, fp, until, PretrainConfig(steps=10, seq_len=48, batch=2, carry=24), progress=False)
    assert all(np.isfinite(losses)) and all(torch.isfinite(p).all() for p in net.parameters())
