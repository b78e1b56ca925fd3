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
from continuum.errors import UserError
from ingest.replay import load_panel
from learner.baselines.volatility import HARRV
from learner.evaluation import harness
from learner.evaluation import metrics as M
from learner.evaluation.regimes import Regime
from learner.features import build_features
from learner.hope.config import HopeConfig
from learner.models import Built
from learner.pipeline import WARMUP_BARS, PretrainCache
from learner.pretrain import PretrainConfig
from learner.protocol import to_raw
from learner.stream import release_mask

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _setup(new_assets: tuple[str, ...] = ()):
    p = load_panel(
        REPO / "data/binance",
        symbols=["BTC/USDT", "ETH/USDT"],
        start=datetime(2021, 9, 1, tzinfo=UTC),
        end=datetime(2022, 1, 20, tzinfo=UTC),
    )
    d = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    until = int(d("2021-10-01").timestamp() * 1000)
    if new_assets:
        p = harness.listed_at_cut(p, new_assets, until)
    fp = build_features(p)
    regimes = (
        Regime("r1", d("2021-09-01"), d("2021-11-01")),
        Regime("r2", d("2021-11-01"), d("2021-12-10")),
        Regime("r3", d("2021-12-10"), d("2022-01-20")),
    )
    return harness.make_setup(fp, regimes, until, weeks_per_regime=1, new_assets=new_assets)


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

    def fit_history(self, x, mask, y, ymask):
        self.fit = (np.array(x), np.array(mask), np.array(ymask))


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


def _spy_run_with_a_new_asset(monkeypatch):
    """ETH listed at the cut; the spy is fitted on history (like a neural baseline) and warms up before the cut."""
    setup = _setup(new_assets=("ETH/USDT",))
    spies = []

    def build_spy(spec, *a, **k):
        m = Spy(setup.fp.x.shape[2], setup.fp.names)
        spies.append(m)
        return Built(m, True)

    monkeypatch.setattr(harness, "build_model", build_spy)
    cache = PretrainCache(setup.fp, setup.cut, PretrainConfig(steps=1), progress=False, skip=setup.skip)
    run = harness.evaluate_model("spy", setup, HopeConfig(n_features=setup.fp.x.shape[2]), cache)
    return setup, cache, spies[0], run


def test_a_new_asset_reaches_no_model_before_the_cut_and_does_after(monkeypatch):
    setup, cache, spy, _run = _spy_run_with_a_new_asset(monkeypatch)
    fp, cut = setup.fp, setup.cut
    eth, btc = fp.symbols.index("ETH/USDT"), fp.symbols.index("BTC/USDT")
    assert setup.new == (eth,)
    # pre-training (Hope) and the history fit (neural baselines) see it fully masked ...
    assert not cache.fp.mask[:cut, eth].any() and not cache.fp.ymask[:cut, eth].any()
    x, mask, ymask = spy.fit
    assert len(mask) == cut and not mask[:, eth].any() and not ymask[:, eth].any() and not x[:, eth].any()
    assert mask[:, btc].mean() > 0.5  # ... while the known asset is there (its first week warms its features)
    # and not even through the market factor: with ETH absent, BTC's mkt_r_1h is its own r_1h
    i, j = fp.names.index("r_1h"), fp.names.index("mkt_r_1h")
    assert np.allclose(x[mask[:, btc], btc, j], x[mask[:, btc], btc, i])
    # the warm-up streams the last WARMUP_BARS before the cut; none of ETH's bars or targets among them
    w0 = max(0, cut - WARMUP_BARS)
    w0 = cut - (cut - w0) // setup.chunk * setup.chunk
    fed = [(b, t + w0) for b, t in spy.fed]
    learned = [(b, t + w0) for b, t, _k in spy.learned]
    assert any(b == btc and t < cut for b, t in fed) and any(b == btc and t < cut for b, t in learned)
    assert not [t for b, t in fed if b == eth and t < cut]
    assert not [t for b, t in learned if b == eth and t < cut]
    # after the cut it is streamed like the others: every usable bar of it, and its targets
    eth_fed = {t for b, t in fed if b == eth}
    assert eth_fed == set(np.flatnonzero(fp.mask[:, eth] & ~setup.skip))
    assert sum(b == eth and t >= cut for b, t in learned) > 1000
    # a listing looks like one: its first forecast waits for its volatility scale and 168h return
    assert cut + 24 < min(eth_fed) <= cut + 24 * 8


def test_new_asset_block_has_the_metrics_over_30_and_90_days(monkeypatch):
    setup, _cache, _spy, run = _spy_run_with_a_new_asset(monkeypatch)
    block, _, _ = harness.summarise_run(run, setup)
    na = block["new_assets"]
    assert set(na) == {"first_30d", "first_90d"}
    for w in na.values():
        assert set(w) == set(block["cumulative"]) == set(M.KEYS)
        assert w["vol_24h_qlike"] > 0 and w["rank_ic_24h"] is None  # IC needs 3 new assets
    # recomputed by hand: ETH's bars only, [cut, cut + 720) and [cut, cut + 2160)
    fp, cut, eth = setup.fp, setup.cut, setup.new[0]
    ok = release_mask(fp, setup.skip) & np.isfinite(run.preds)
    raw = to_raw(np.nan_to_num(run.preds), fp.sigma)
    q = M.per_bar(raw, fp.y, ok)["qlike"][:, eth]
    for w, n in (("first_30d", 720), ("first_90d", 2160)):
        v = q[cut : cut + n]
        assert na[w]["vol_24h_qlike"] == pytest.approx(float(np.nanmean(v)))
    assert na["first_30d"]["vol_24h_qlike"] != na["first_90d"]["vol_24h_qlike"]
    assert na["first_90d"]["vol_24h_qlike"] != block["cumulative"]["vol_24h_qlike"]
    assert block["fit_seconds"] >= 0 and block["stream_seconds"] > 0 and block["total_seconds"] > 0


def test_new_assets_must_exist_and_be_hidden():
    p = load_panel(
        REPO / "data/binance",
        symbols=["BTC/USDT", "ETH/USDT"],
        start=datetime(2021, 9, 1, tzinfo=UTC),
        end=datetime(2021, 11, 1, tzinfo=UTC),
    )
    until = int(datetime(2021, 10, 1, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(UserError, match="DOGE/USDT"):
        harness.listed_at_cut(p, ["DOGE/USDT"], until)
    with pytest.raises(UserError, match="every symbol"):
        harness.listed_at_cut(p, ["BTC/USDT", "ETH/USDT"], until)
    with pytest.raises(ValueError, match="listed_at_cut"):  # features built from the full panel
        harness.make_setup(build_features(p), (), until, new_assets=["ETH/USDT"])


def test_seeds_give_mean_and_std_and_deterministic_models_run_once(monkeypatch, tmp_path):
    """--seeds 3 through run_evaluation (a seeded spy stands in for a learning model): the same held-out
    weeks for every seed, mean/std/values per metric, one run of a deterministic model, valid JSON, report."""
    import jsonschema

    from learner.evaluation import evaluate as E

    setup = _setup(new_assets=("ETH/USDT",))
    seen = []

    class Seeded(HARRV):  # forecasts that depend on the seed, as a learning model's do
        def predict(self, x, mask):
            p = super().predict(x, mask)
            p[..., 2] += 0.05 * (self.seed - 7)
            return p

    def build(spec, *a, seed=0, **k):
        m = Seeded(setup.fp.x.shape[2], setup.fp.names) if spec == "seeded" else HARRV(setup.fp.x.shape[2])
        m.seed = seed
        seen.append((spec, seed))
        return Built(m, False)

    monkeypatch.setattr(harness, "build_model", build)
    monkeypatch.setattr(E, "is_seeded", lambda spec: spec == "seeded")
    weeks = copy.deepcopy(setup.weeks)
    doc = E.run_evaluation(
        setup.fp,
        setup,
        setup.regimes,
        ["seeded", "har"],
        datetime(2021, 10, 1, tzinfo=UTC),
        tmp_path,
        seed=7,
        pretrain_steps=1,
        progress=False,
        seeds=3,
    )
    assert seen == [("seeded", 7), ("seeded", 8), ("seeded", 9), ("har", 7)]
    assert setup.weeks == weeks
    sd = doc["models"]["seeded"]["seeds"]
    assert sd["n"] == 3 and sd["seed_values"] == [7, 8, 9] and not sd["deterministic"]
    q = sd["cumulative"]["vol_24h_qlike"]
    assert len(q["values"]) == 3 and len(set(q["values"])) == 3
    assert q["mean"] == pytest.approx(np.mean(q["values"])) and q["std"] == pytest.approx(np.std(q["values"], ddof=1))
    assert q["values"][0] == doc["models"]["seeded"]["cumulative"]["vol_24h_qlike"]  # today's keys: seed 0
    assert set(sd["per_regime"]) == set(doc["models"]["seeded"]["per_regime"])
    assert set(sd["forgetting"]) == {"bwt", "avg_forgetting"}
    assert set(sd["new_assets"]) == {"first_30d", "first_90d"}
    assert len(sd["new_assets"]["first_30d"]["vol_24h_qlike"]["values"]) == 3
    assert doc["new_assets"]["seeded"] == doc["models"]["seeded"]["new_assets"]  # new_assets.<model>.first_30d
    har = doc["models"]["har"]["seeds"]
    assert har["n"] == 1 and har["deterministic"] and har["cumulative"]["vol_24h_qlike"]["std"] == 0.0
    assert doc["wall_seconds"] > 0 and doc["data"]["new_assets"] == ["ETH/USDT"]
    for m in doc["models"].values():
        assert {"fit_seconds", "stream_seconds", "new_assets"} <= set(m)
    on_disk = json.loads((tmp_path / "evaluation.json").read_text())
    jsonschema.validate(on_disk, json.loads((REPO / "learner/evaluation/evaluation.schema.json").read_text()))
    report = (tmp_path / "report.md").read_text()
    assert "3 seeds" in report and "exceeds 2 std" in report and "ran once" in report
    assert " ± " in report and "## New assets (ETH/USDT)" in report and "## Cost (seconds)" in report


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
    assert doc["wall_seconds"] > 0 and all(m["stream_seconds"] > 0 for m in doc["models"].values())
