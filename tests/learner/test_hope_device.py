"""Hope on an accelerator: pre-training a few steps, streaming, chunked == per-step, no host sync per call.

Marked ``cuda``: they run on CUDA when a GPU is visible and on the CPU otherwise (never skipped: CI has no GPU,
and a skipped test tests nothing). ``CONTINUUM_TEST_DEVICE`` picks the device explicitly::

    CONTINUUM_TEST_DEVICE=cpu pytest -m cuda tests/learner/test_hope_device.py

Tolerances: the device against the CPU reference 1e-4 absolute on forecasts of size ~0.1-1 (float32, TF32 off,
different kernels and summation orders); chunked against per-step on the device as on the CPU.
"""

from __future__ import annotations

import contextlib
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

DEVICE = os.environ.get("CONTINUUM_TEST_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.cuda
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
    Python. On CUDA torch's sync debug mode turns any into an error; on the CPU (no sync to observe) every way
    Python reads the value of a floating-point tensor (forecasts, states, gates: what the model computes) is made
    to raise instead. Integer and bool tensors are not policed there: the bar numbers and target masks the caller
    passes live on the host by design (learner.stream builds them), and on one CPU they cannot be told apart from
    device tensors — so this CPU form is weaker than the CUDA one, which a GPU machine runs."""
    B, T = 8, 72
    m = Hope(_cfg(), device=DEVICE)
    m.reset(B)
    x = torch.randn(B, T, 6, device=DEVICE)
    mask = torch.ones(B, T, dtype=torch.bool, device=DEVICE)
    y = torch.randn(B, T, 3).abs()
    valid = torch.ones(T, B, 3, dtype=torch.bool)
    for call in (24, 1):
        for s in range(0, 48, call):
            a, new = realised_window(s, s + call, HORIZON_TUPLE, valid)
            steps = torch.arange(a, s + call)
            with _no_host_reads(enabled=s >= 24):  # after a warm-up period (first calls allocate, compile, ...)
                m.predict(x[:, s : s + call], mask[:, s : s + call])
                m.learn(steps, y[:, a : s + call], new)
        m.reset(B)


@contextlib.contextmanager
def _no_host_reads(enabled: bool):
    if not enabled:
        yield
    elif DEVICE.startswith("cuda"):
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        names = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")
        saved = {n: getattr(torch.Tensor, n) for n in names}

        def refuse(name: str):
            def read(t: torch.Tensor, *a, **k):
                if t.dtype.is_floating_point:
                    raise AssertionError(f"Tensor.{name} of a {t.dtype} tensor: a host read in the hot path")
                return saved[name](t, *a, **k)

            return read

        try:
            for n in names:
                setattr(torch.Tensor, n, refuse(n))
            yield
        finally:
            for n, f in saved.items():
                setattr(torch.Tensor, n, f)


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


def test_evaluate_and_backtest_pipeline_pretrains_and_streams_on_the_device():
    """``PretrainCache(device=...)`` (what `evaluate --device` and `backtest --device` build): the meta-learned nets
    are trained and kept on the device, and the model streamed from the cut runs there with finite forecasts."""
    from learner.pipeline import PretrainCache, stream_from_cut

    fp = synthetic_panel(T=600, B=3, F=6, seed=5)
    cache = PretrainCache(fp, 480, PretrainConfig(steps=2, seq_len=48, batch=4, carry=2, seed=1), False, device=DEVICE)
    res = stream_from_cut("hope", fp, 480, cache, base=_cfg(), chunk=8, device=DEVICE)
    (net,) = cache.nets.values()
    assert {p.device.type for p in net.parameters()} == {torch.device(DEVICE).type}
    assert np.isnan(res.preds[:480]).all() and np.isfinite(res.preds[480:][fp.mask[480:]]).all()
