"""Hope on an accelerator: pre-training a few steps, streaming, chunked == per-step, no host sync per call.

Marked ``cuda``: they run on CUDA when a GPU is visible and skip otherwise. ``CONTINUUM_TEST_DEVICE=cpu`` runs
the same checks on the CPU, which is how they are verified on a machine without a GPU::

    CONTINUUM_TEST_DEVICE=cpu pytest -m cuda tests/learner/test_hope_device.py

Tolerances: the device against the CPU reference 1e-4 absolute on forecasts of size ~0.1-1 (float32, TF32 off,
different kernels and summation orders); chunked against per-step on the device as on the CPU.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.pretrain import PretrainConfig, pretrain
from learner.protocol import realised_window
from learner.stream import HORIZON_TUPLE, run_stream
from tests.learner.synthetic import synthetic_panel

DEVICE = os.environ.get("CONTINUUM_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device"),
]
torch.set_num_threads(1)


def _cfg(**kw) -> HopeConfig:
    base = dict(n_features=6, d_model=16, d_hidden=16, cms_hidden=16, cms_periods=(24, 48), cms_lr=(0.05, 0.02))
    return HopeConfig(**{**base, **kw})


def test_pretrain_a_few_steps_on_the_device():
    fp = synthetic_panel(T=1200, B=3, F=6, seed=2)
    pcfg = PretrainConfig(steps=4, seq_len=48, batch=4, carry=2, seed=1)
    net, losses = pretrain(_cfg(), fp, 1000, pcfg, progress=False, device=DEVICE)
    assert all(p.device.type == torch.device(DEVICE).type for p in net.parameters())
    assert len(losses) == 4 and np.all(np.isfinite(losses))
    _, cpu_losses = pretrain(_cfg(), fp, 1000, pcfg, progress=False, device="cpu")
    # the same steps up to kernel rounding: the first loss comes before any update; AdamW's early steps are
    # nearly sign steps, so later losses may drift a little more
    np.testing.assert_allclose(losses[0], cpu_losses[0], rtol=1e-4)
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-2)


def test_stream_on_the_device_matches_the_cpu_and_chunked_equals_per_step():
    fp = synthetic_panel(T=240, B=4, F=6, seed=4)
    fp.mask[30:41, 2] = False
    torch.manual_seed(0)
    net = HopeNet(_cfg())
    preds = {}
    for device, chunk in (("cpu", 8), (DEVICE, 8), (DEVICE, 1), (DEVICE, 24)):
        m = Hope(net.cfg, net=copy.deepcopy(net), device=device)
        m.reset(4)
        preds[device, chunk] = run_stream(m, fp, chunk=chunk).preds
    ref = preds["cpu", 8]
    np.testing.assert_allclose(preds[DEVICE, 8], ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(preds[DEVICE, 1], preds[DEVICE, 8], rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(preds[DEVICE, 24], preds[DEVICE, 8], rtol=1e-5, atol=2e-6)


def test_predict_and_learn_do_not_wait_for_the_device():
    """A host sync per call (``if tensor:``, ``.item()``, a blocking copy back) would serialise the GPU with
    Python; torch's sync debug mode turns any into an error."""
    if not DEVICE.startswith("cuda"):
        pytest.skip("sync debug mode exists on CUDA only")
    B, T = 8, 72
    m = Hope(_cfg(), device=DEVICE)
    m.reset(B)
    x = torch.randn(B, T, 6, device=DEVICE)
    mask = torch.ones(B, T, dtype=torch.bool, device=DEVICE)
    y = torch.randn(B, T, 3).abs()
    valid = torch.ones(T, B, 3, dtype=torch.bool)
    for call in (24, 1):
        for s in range(0, 48, call):
            if s >= 24:  # after a warm-up period (first calls allocate, compile kernels, ...)
                torch.cuda.set_sync_debug_mode("error")
            try:
                m.predict(x[:, s : s + call], mask[:, s : s + call])
                a, new = realised_window(s, s + call, HORIZON_TUPLE, valid)
                m.learn(torch.arange(a, s + call), y[:, a : s + call], new)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        m.reset(B)


def test_compiled_write_equals_eager():
    """``Hope(compile=True)``: the write through torch.compile gives the eager numbers (to rounding)."""
    fp = synthetic_panel(T=96, B=3, F=6, seed=6)
    torch.manual_seed(0)
    net = HopeNet(_cfg())
    preds = []
    for compile in (False, True):
        m = Hope(net.cfg, net=copy.deepcopy(net), device=DEVICE, compile=compile)
        m.reset(3)
        preds.append(run_stream(m, fp, chunk=24).preds)
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-5, atol=2e-6)
