"""The shipped Hope stays healthy over a long real stream (issue 12; pitfalls §4.9).

The shipped meta-weights (``data/hope_pretrained.pt``, pre-trained on bars before 2018-12-15) stream BTC and
ETH from 2018-12-15 to the end of 2021 with learning on: 2 x ~26,000 = ~52,000 real bars, 15x longer than
any stream pre-training ran. The first landing's memory failed exactly this (its clamp cut ~95% of writes,
surprise reached ~1e4 and kept rising, the output layer grew ~10x over months). The bounds below are
stated, not fitted to one run: a written part that stays bounded, writes that follow surprise (the clamp is
the exception), surprise that does not drift up, and forecasts inside the range the model can express.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from continuum.timeframes import parse_date
from ingest.replay import load_panel
from learner.checkpoint import load_pretrained
from learner.features import build_features
from learner.hope.online import Hope
from learner.stream import run_stream

REPO = Path(__file__).resolve().parents[2]
MONTH = 720


@pytest.fixture(scope="module")
def long_stream():
    torch.set_num_threads(1)
    net, _ = load_pretrained(REPO / "data" / "hope_pretrained.pt")
    panel = load_panel(
        REPO / "data" / "binance",
        symbols=["BTC/USDT", "ETH/USDT"],
        start=parse_date("2018-12-15"),
        end=parse_date("2022-01-01"),
    )
    fp = build_features(panel)
    model = Hope(net.cfg, net)
    model.reset(len(fp.symbols))
    res = run_stream(model, fp, chunk=8, record_activity=True)
    return fp, res, model


def _monthly(v: np.ndarray) -> np.ndarray:
    s = np.nanmean(v, axis=1)
    return np.array([np.nanmean(s[i : i + MONTH]) for i in range(0, len(s) - MONTH + 1, MONTH)])


def test_the_stream_is_long_and_real(long_stream):
    fp, res, _ = long_stream
    assert int(fp.mask.sum()) >= 50_000
    assert res.bars * len(fp.symbols) >= 50_000


def test_the_memory_stays_bounded(long_stream):
    """Anchored retention: the main memory's weights stay within 2x of their first month, every month."""
    _, res, _ = long_stream
    w = _monthly(res.activity["mem_weight_norm"])
    assert np.isfinite(w).all()
    assert w.max() <= 2.0 * w[0], w


def test_the_clamp_does_not_cut_every_write(long_stream):
    """The per-token clamp cuts at most 3 writes in 4 overall and 19 in 20 in any month (the first landing's
    memory: 99% overall, in every month). Not yet the exception it should be: the shipped net cuts 59% overall
    and 93% in its worst month; with a clamp of 10 instead of 1 a net cut 1.7% on the validation stream, but
    forecast no better there (docs/results.md), so the default stays 1. A known limitation, measured here."""
    _, res, _ = long_stream
    clip = _monthly(res.activity["mem_clip_frac"])
    assert float(np.nanmean(res.activity["mem_clip_frac"])) <= 0.75
    assert clip.max() <= 0.95, clip


def test_surprise_does_not_drift_up(long_stream):
    """Surprise of the last year is no higher than twice that of the first (the first landing: ~1e4, rising)."""
    _, res, _ = long_stream
    s = _monthly(res.activity["surprise"])
    assert np.isfinite(s).all() and s.max() < 1e3, s
    assert np.median(s[-12:]) <= 2 * np.median(s[:12]), s


def test_forecasts_stay_in_range(long_stream):
    """Every forecast of a present bar is finite; returns within 5 vol units, log variance ratio within +-6."""
    fp, res, _ = long_stream
    p = res.preds[fp.mask]
    assert np.isfinite(p).all()
    assert np.abs(p[:, :2]).max() <= 5.0
    assert np.abs(p[:, 2]).max() <= 6.0
