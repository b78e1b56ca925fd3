"""Every baseline runs through the same protocol, and resumes exactly from a whole-state checkpoint."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from learner.baselines.linear import RiverLinear
from learner.baselines.neural import OnlineGRU, OnlineTransformer, SlidingGRU
from learner.baselines.volatility import GARCH11, HARRV, EWMAVol
from learner.checkpoint import load_state, save_state
from learner.features import feature_names
from learner.stream import run_stream
from tests.learner.synthetic import synthetic_panel

torch.set_num_threads(1)
NAMES = feature_names()
F = len(NAMES)


def _panel():
    fp = synthetic_panel(T=120, B=2, F=F, seed=11)
    fp.names = NAMES
    return fp


MAKERS = {
    "ewma": lambda: EWMAVol(F, NAMES),
    "har": lambda: HARRV(F, NAMES),
    "garch": lambda: GARCH11(F, NAMES, refit=48, window=96),
    "river_linear": lambda: RiverLinear(F, NAMES),
    "gru_online": lambda: OnlineGRU(F, hidden=16, seed=1),
    "transformer_online": lambda: OnlineTransformer(F, d=16, window=16, seed=1),
    "gru_sliding": lambda: SlidingGRU(F, hidden=16, every=48, window=64, steps=5, seed=1),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_checkpoint_resume_equals_uninterrupted(name, tmp_path):
    fp = _panel()
    torch.manual_seed(0)
    ref_model = MAKERS[name]()
    start_state = copy.deepcopy(ref_model)
    ref_model.reset(2)
    ref = run_stream(ref_model, fp, chunk=8).preds

    torch.manual_seed(0)
    part = copy.deepcopy(start_state)
    part.reset(2)
    run_stream(part, fp, end=56, chunk=8)
    save_state(tmp_path / "m.pt", part, {"bar": 56})
    resumed = copy.deepcopy(start_state)
    resumed.reset(2)
    assert load_state(tmp_path / "m.pt", resumed) == {"bar": 56}
    rest = run_stream(resumed, fp, start=56, chunk=8, clock0=0).preds
    np.testing.assert_allclose(rest[56:], ref[56:], rtol=1e-5, atol=1e-6)
    assert np.isfinite(ref[:, :, 2]).all()


@pytest.mark.parametrize("name", ["har", "river_linear", "gru_online"])
def test_learning_baselines_learn_something(name):
    """On a stream whose targets are a fixed function of the features, learning must beat not learning."""
    fp = synthetic_panel(T=600, B=2, F=F, seed=3)
    fp.names = NAMES
    # next-day variance driven by the daily realised-variance feature, as HAR assumes
    fp.y[..., 2] = 24 * np.exp(0.8 * fp.x[..., NAMES.index("lrv_24h")])
    errs = []
    for learn in (True, False):
        torch.manual_seed(0)
        m = MAKERS[name]()
        m.reset(2)
        p = run_stream(m, fp, chunk=8, learn=learn).preds
        k = 2 if name == "har" else 0
        y = np.log(fp.y[..., 2] / 24 + 1e-3) if k == 2 else fp.y[..., 0]
        errs.append(float(np.nanmean((p[300:, :, k] - y[300:]) ** 2)))
    assert errs[0] < errs[1], errs


def _plain(v) -> bool:
    """Numbers, strings, lists, dicts and numeric tensors only (no bytes of a pickled object)."""
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    if isinstance(v, list | tuple):
        return all(_plain(x) for x in v)
    if isinstance(v, torch.Tensor):
        return v.dtype != torch.uint8
    return v is None or isinstance(v, bool | int | float | str)


def test_river_linear_checkpoint_is_plain_data_and_resumes_exactly(tmp_path, monkeypatch):
    """The River model is checkpointed as plain numbers (no pickle anywhere): restored into a fresh model,
    it predicts exactly what an uninterrupted run predicts."""
    import pickle

    fp = _panel()
    ref_model = RiverLinear(F, NAMES)
    ref_model.reset(2)
    ref = run_stream(ref_model, fp, chunk=8).preds

    part = RiverLinear(F, NAMES)
    part.reset(2)
    run_stream(part, fp, end=56, chunk=8)
    saved = part.state_dict()
    assert _plain(saved), saved
    assert any(saved["models"][0]["weights"].values())  # it has learned something worth keeping

    def no_pickle(*_a, **_k):
        raise AssertionError("pickle must not be used by a checkpoint")

    monkeypatch.setattr(pickle, "dumps", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    save_state(tmp_path / "r.pt", part, {"bar": 56})
    ck = torch.load(tmp_path / "r.pt", weights_only=True)  # the safe loader reads it as it is
    assert _plain(ck["state"])

    resumed = RiverLinear(F, NAMES)
    resumed.reset(2)
    assert load_state(tmp_path / "r.pt", resumed) == {"bar": 56}
    assert resumed.state_dict()["models"] == saved["models"]
    rest = run_stream(resumed, fp, start=56, chunk=8, clock0=0).preds
    np.testing.assert_array_equal(rest[56:], ref[56:])
    assert np.isfinite(rest[56:]).all()


def test_river_linear_state_in_the_old_pickled_layout_is_refused_in_one_line(tmp_path):
    """A checkpoint from the version that pickled River objects is never unpickled: one clear UserError."""
    from continuum.errors import UserError

    old = RiverLinear(F, NAMES)
    old.reset(2)
    state = old.state_dict()
    state["models"] = torch.zeros(64, dtype=torch.uint8)  # where the pickle bytes used to be
    ck = {"kind": "continuum.state/1", "model": old.name, "state": state, "rng": torch.get_rng_state(), "position": {}}
    torch.save(ck, tmp_path / "old.pt")
    fresh = RiverLinear(F, NAMES)
    fresh.reset(2)
    with pytest.raises(UserError, match=r"old\.pt: written by another version of Continuum.*older layout"):
        load_state(tmp_path / "old.pt", fresh)
