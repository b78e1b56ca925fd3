"""Issue 12's two late knobs: meta-learned gate ranges (learn_gate_range) and the return calibration (ret_calib)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from learner.hope.calibration import ReturnCalibration
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.stream import run_stream
from tests.learner.synthetic import small_cfg, synthetic_panel

torch.set_num_threads(1)


def test_the_calibration_is_on_by_default_but_not_for_frozen_the_gate_range_is_off():
    from learner.models import hope_config

    assert HopeConfig().ret_calib and not HopeConfig().learn_gate_range
    assert not hope_config("hope-frozen", HopeConfig()).ret_calib
    assert hope_config("hope[ret-calib=720]", HopeConfig()).ret_calib_prior == 720.0


def test_no_ret_calib_switches_only_the_calibration_off_and_shares_the_pretrained_net():
    from learner.models import hope_config, pretrain_key

    on, off = hope_config("hope", HopeConfig()), hope_config("hope[no-ret-calib]", HopeConfig())
    assert on.ret_calib and not off.ret_calib
    assert off == on.with_(ret_calib=False)
    assert pretrain_key(off) == pretrain_key(on)
    from continuum.errors import UserError

    for contradiction in ("hope[no-ret-calib,ret-calib-hl=720]", "hope[ret-calib=720,no-ret-calib]"):
        with pytest.raises(UserError, match="pick one"):
            hope_config(contradiction, HopeConfig())


def test_checkpoints_from_before_the_knobs_load_with_them_off():
    old = small_cfg().to_dict()
    for k in ("learn_gate_range", "ret_calib", "ret_calib_prior", "ret_calib_halflife"):
        old.pop(k)
    cfg = HopeConfig.from_dict(old)
    assert not cfg.learn_gate_range and not cfg.ret_calib


# ----------------------------------------------------------------------------- learned gate ranges
def test_learned_gate_range_starts_at_the_constants_and_moves_nothing_else():
    """At init the learned ranges are the configured constants (to float rounding), every other weight is drawn
    the same, and a whole stream with writes and CMS steps gives the same forecasts."""
    torch.manual_seed(0)
    a = HopeNet(small_cfg(learn_gate_range=False))
    torch.manual_seed(0)
    b = HopeNet(small_cfg(learn_gate_range=True))
    eta_max, alpha_min = (v.detach() for v in b.titans.gate_range())
    assert abs(float(eta_max) - 0.05) < 1e-7 and abs(float(alpha_min) - 0.9) < 1e-7
    pb = dict(b.named_parameters())
    assert set(pb) - {n for n, _ in a.named_parameters()} == {"titans.gate_range_logit"}
    for n, p in a.named_parameters():
        assert torch.equal(p, pb[n]), n
    fp = synthetic_panel(T=96, B=2, F=6, seed=3)
    preds = []
    for cfg, net in ((a.cfg, a), (b.cfg, b)):
        m = Hope(cfg, net=net)
        m.reset(2)
        preds.append(run_stream(m, fp, chunk=4).preds)
    np.testing.assert_allclose(preds[1], preds[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("logits", [(-15.0, -15.0), (15.0, 15.0), (-15.0, 15.0), (15.0, -15.0), (0.3, -2.0)])
def test_learned_gate_range_keeps_the_projector_a_contraction(logits):
    """Whatever pre-training learns, 0 < eta_max <= alpha_min <= 1, so alpha I - eta k k^T (|k| = 1, eta <= eta_max,
    alpha >= alpha_min) has its eigenvalues alpha and alpha - eta in [0, 1]."""
    net = HopeNet(small_cfg(learn_gate_range=True))
    with torch.no_grad():
        net.titans.gate_range_logit.copy_(torch.tensor(logits))
    eta_max, alpha_min = (float(v.detach()) for v in net.titans.gate_range())
    assert 0 < eta_max <= alpha_min <= 1
    k = torch.nn.functional.normalize(torch.randn(8), dim=0)
    for eta, alpha in ((eta_max, alpha_min), (eta_max, 1.0), (0.0, alpha_min)):
        eig = torch.linalg.eigvalsh(alpha * torch.eye(8) - eta * torch.outer(k, k))
        assert eig.min() >= -1e-6 and eig.max() <= 1 + 1e-6


def test_learned_gate_range_gets_an_outer_gradient():
    torch.manual_seed(0)
    net = HopeNet(small_cfg(learn_gate_range=True))
    x = torch.randn(2, 16, 6)
    st = net.init_state(2)
    pred, _, _, _ = net(st, x, torch.ones(2, 16, dtype=torch.bool))
    pred.pow(2).sum().backward()
    g = net.titans.gate_range_logit.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_learned_gate_range_needs_room_for_its_logits():
    with pytest.raises(ValueError):
        small_cfg(learn_gate_range=True, alpha_min=1.0)
    with pytest.raises(ValueError):
        small_cfg(learn_gate_range=True, eta_max=0.9, alpha_min=0.9)


# ----------------------------------------------------------------------------- return calibration
def test_calibration_is_ridge_least_squares_with_a_prior_at_zero():
    cfg = small_cfg(ret_calib=True, ret_calib_prior=50.0)
    cal = ReturnCalibration(cfg, n_streams=2, ring=64, device=torch.device("cpu"))
    assert torch.equal(cal.factor(), torch.zeros(2))  # no evidence: the zero forecast
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 40, 2, generator=g)
    cal.ring[:, :40] = f
    y = torch.zeros(2, 40, 3)
    y[..., :2] = 0.5 * f + 0.1 * torch.randn(2, 40, 2, generator=g)
    m = torch.ones(2, 40, 3, dtype=torch.bool)
    m[1, 30:] = False  # unreleased targets count for nothing
    cal.update(slice(0, 40), y, m)
    cal.tick(23)
    assert torch.equal(cal.c, torch.zeros(2))  # refreshed on the clock only (every 24 bars), not per call
    cal.tick(24)
    w = m[..., :2].float()
    s_fy, s_ff, n = (f * y[..., :2] * w).sum((0, 1)) / 2, (f * f * w).sum((0, 1)) / 2, w.sum((0, 1)) / 2
    expect = (s_fy / s_ff) * n / (n + 50.0)
    torch.testing.assert_close(cal.c, expect)
    assert (expect > 0.2).all() and (expect < 0.5).all()  # shrunk from ~0.5 toward 0 by the prior (35 vs 50 bars)


def test_calibration_scales_only_the_returns_and_starts_at_zero():
    """Vol forecasts and everything learned are those of the uncalibrated model; returns are c x raw, c in [0, 1],
    and 0 before the first target is released."""
    fp = synthetic_panel(T=96, B=2, F=6, seed=2)  # a stream on which c leaves 0 (on others it stays there)
    torch.manual_seed(0)
    net = HopeNet(small_cfg())
    raw = Hope(small_cfg(ret_calib=False), net=copy.deepcopy(net))
    cal = Hope(small_cfg(ret_calib=True, ret_calib_prior=4.0, ret_calib_period=4), net=net)
    out = []
    for m in (raw, cal):
        m.reset(2)
        out.append(run_stream(m, fp, chunk=4).preds)
    np.testing.assert_array_equal(out[1][..., 2], out[0][..., 2])
    assert np.all(out[1][:4, :, :2] == 0)  # the first call: nothing released yet
    ok = np.abs(out[0][..., :2]) > 1e-6
    ratio = out[1][..., :2][ok] / out[0][..., :2][ok]
    assert ratio.min() >= -1e-6 and ratio.max() <= 1 + 1e-6 and ratio.max() > 0
