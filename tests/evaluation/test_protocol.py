"""Protocol invariants of `continuum evaluate`, each written so it would fail if the protocol broke."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from commands.cli import main
from ingest.replay import load_panel
from learner.baselines.volatility import HARRV
from learner.evaluation import harness
from learner.evaluation.regimes import Regime
from learner.features import build_features
from learner.hope.config import HopeConfig
from learner.models import Built
from learner.pipeline import PretrainCache
from learner.pretrain import PretrainConfig

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _setup():
    p = load_panel(
        REPO / "data/binance",
        symbols=["BTC/USDT", "ETH/USDT"],
        start=datetime(2021, 9, 1, tzinfo=UTC),
        end=datetime(2022, 1, 20, tzinfo=UTC),
    )
    fp = build_features(p)
    d = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    regimes = (
        Regime("r1", d("2021-09-01"), d("2021-11-01")),
        Regime("r2", d("2021-11-01"), d("2021-12-10")),
        Regime("r3", d("2021-12-10"), d("2022-01-20")),
    )
    return harness.make_setup(fp, regimes, int(d("2021-10-01").timestamp() * 1000), weeks_per_regime=1)


class Spy(HARRV):
    """HAR that records everything it is given, and checks the clock on every target."""

    def reset(self, n):
        super().reset(n)
        self.fed, self.learned = [], []

    def predict(self, x, mask):
        for b, i in mask.nonzero().tolist():
            self.fed.append((b, self.t + i))
        return super().predict(x, mask)

    def learn(self, steps, y, ymask):
        for b, i, k in ymask.nonzero().tolist():
            t = int(steps[i])
            assert t + (1, 24, 24)[k] < self.t, f"target of bar {t} (k={k}) released at clock {self.t}"
            self.learned.append((b, t, k))
        super().learn(steps, y, ymask)


def test_targets_never_early_and_held_out_weeks_never_reach_a_model(monkeypatch):
    setup = _setup()
    assert all(len(w) == 1 for w in setup.weeks) and setup.skip.sum() == 3 * 168
    spy = Spy(setup.fp.x.shape[2], setup.fp.names)
    spies = []

    def build_spy(spec, *a, **k):
        m = copy.deepcopy(spy)
        spies.append(m)
        return Built(m, False)

    monkeypatch.setattr(harness, "build_model", build_spy)
    cache = PretrainCache(setup.fp, setup.cut, PretrainConfig(steps=1), progress=False, skip=setup.skip)
    run = harness.evaluate_model("spy", setup, HopeConfig(n_features=setup.fp.x.shape[2]), cache)
    live = spies[0]
    w0 = 0  # classical models warm up from the first bar
    fed_bars = {t + w0 for _, t in live.fed}
    held = set(np.flatnonzero(setup.skip))
    assert held and not (fed_bars & held)  # held-out bars never streamed to the live model
    for _b, t, k in live.learned:
        h = (1, 24, 24)[k]
        assert not any(setup.skip[t : t + h + 1]), f"target of bar {t} spans a held-out bar"
    assert len(live.learned) == len(set(live.learned)) > 1000
    # and the scoring copies did see the held-out weeks (that is what they are for)
    assert any(r is not None for row in run.R for r in row)


def test_scoring_leaves_the_live_state_bit_identical():
    setup = _setup()
    from learner.hope.online import Hope

    cfg = HopeConfig(n_features=setup.fp.x.shape[2], d_model=8, d_hidden=8, cms_hidden=8)
    m = Hope(cfg)
    m.reset(2)
    from learner.stream import run_stream

    run_stream(m, setup.fp, start=0, end=setup.cut, skip=setup.skip, clock0=0)
    before = copy.deepcopy(m.state_dict())
    for j in range(3):
        harness._score(m, setup, j, setup.cut)
    after = m.state_dict()

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return torch.equal(a, b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    assert same(before, after)


@pytest.mark.slow
def test_small_real_slice_end_to_end(tmp_path):
    import jsonschema

    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate",
            "--data",
            str(REPO / "data/binance"),
            "--out",
            str(out),
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--models",
            "hope,hope-frozen,har,ewma",
            "--start",
            "2018-06-01",
            "--end",
            "2019-03-01",
            "--pretrain-until",
            "2018-09-01",
            "--pretrain-steps",
            "3",
            "--weeks-per-regime",
            "1",
            "--quiet",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "evaluation.json").read_text())
    schema = json.loads((REPO / "learner/evaluation/evaluation.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert set(doc["models"]) == {"hope", "hope-frozen", "har", "ewma"}
    for m in doc["models"].values():
        assert m["cumulative"]["vol_24h_qlike"] > 0 and len(m["forgetting"]["R"]) == len(doc["regimes"])
    assert doc["regimes"][0]["in_pretraining"] is True  # 2017 bull is before the slice's streamed part
    for f in ("report.md", "errors.parquet", "cumulative_error.png", "forgetting_matrices.png", "per_regime.png"):
        assert (out / f).stat().st_size > 0, f
    assert "| hope |" in (out / "report.md").read_text()
