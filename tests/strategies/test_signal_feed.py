"""The signal feed: weights from the feed rule, direction and confidence consistent, and `continuum signals`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import polars as pl
import pytest

from commands.cli import main
from continuum.lake import Lake
from continuum.schema import NEUTRAL_WEIGHT, direction_of
from learner.signals import FEED_COLUMNS, confidence, frame_to_signals, signals_frame
from strategies.positions import feed_weights


@pytest.fixture(scope="module")
def frame(fp) -> pl.DataFrame:
    """Signals of the real 2019 slice with noisy forecasts and the feed rule's weights."""
    rng = np.random.default_rng(0)
    preds = rng.normal(0, 0.4, fp.y.shape).astype(np.float32)
    preds[:300] = np.nan
    preds[..., 1] += 0.15 * np.sin(np.arange(len(fp.times)) / 90.0)[:, None]  # slow swings: long, then short
    w = feed_weights(fp, preds)
    return signals_frame("hope", "binance", fp.symbols, fp.times, preds, fp.sigma, fp.mask, weights=w)


@pytest.fixture(scope="module")
def lake(frame, tmp_path_factory):
    """The frame in a lake, plus v1 rows (no direction/weight/confidence) of an older model run."""
    root = tmp_path_factory.mktemp("feed") / "lake"
    lake = Lake(root)
    lake.append("signal", frame)
    old = frame.filter(pl.col("symbol") == "BTC/USDT").head(50).drop("direction", "weight", "confidence")
    lake.append("signal", old.with_columns(model=pl.lit("hope_v1")))
    return root


def test_direction_weight_and_confidence_are_consistent(frame):
    assert frame["weight"].is_not_null().all()
    assert frame["direction"].to_list() == [direction_of(w) for w in frame["weight"].to_list()]
    assert {"long", "short"} <= set(frame["direction"])
    w = frame["weight"].to_numpy()
    assert np.abs(w).max() <= 1 / 2 + 1e-12  # at most its 1/B sleeve: no leverage
    assert ((np.abs(w) < NEUTRAL_WEIGHT) == (frame["direction"] == "neutral").to_numpy()).all()
    c = frame["confidence"].to_numpy()
    assert ((c >= 0) & (c < 1)).all()
    np.testing.assert_allclose(c, confidence(frame["ret_24h"].to_numpy(), frame["vol_24h"].to_numpy()))
    big = np.abs(frame["ret_24h"].to_numpy() / frame["vol_24h"].to_numpy())
    assert np.all(np.diff(c[np.argsort(big)]) >= -1e-15)  # monotone in |mu| / sigma
    for sig in frame_to_signals(frame.head(20)):  # every row is a valid v2 Signal
        assert sig.direction == direction_of(sig.weight) and sig.confidence is not None


def test_csv_has_the_latest_signal_of_each_asset(lake, frame, capsys):
    assert main(["signals", "--lake", str(lake), "--model", "hope"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["symbol"] for r in rows] == ["BTC/USDT", "ETH/USDT"]
    assert list(rows[0]) == list(FEED_COLUMNS)
    for r in rows:
        want = frame.filter(pl.col("symbol") == r["symbol"]).sort("ts").tail(1).row(0, named=True)
        assert int(r["ts"]) == want["ts"] and r["time"].endswith("Z")
        assert float(r["weight"]) == pytest.approx(want["weight"], rel=1e-12)
        assert r["direction"] == want["direction"] == direction_of(float(r["weight"]))
        assert float(r["confidence"]) == pytest.approx(want["confidence"], rel=1e-12)


def test_json_last_n_with_freqtrade_entries_and_exits(lake, frame, capsys):
    assert main(["signals", "--lake", str(lake), "--format", "json", "--symbols", "ETH/USDT", "--last", "400"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 400 and {r["model"] for r in rows} == {"hope"}  # hope_v1 has no ETH
    eth = frame.filter(pl.col("symbol") == "ETH/USDT").sort("ts")
    assert [r["ts"] for r in rows] == eth["ts"].tail(400).to_list()
    sides = eth["direction"].tail(401).to_list()
    for prev, r in zip(sides, rows, strict=False):
        side = r["direction"]
        assert r["enter_long"] == int(side == "long" and prev != "long")
        assert r["exit_long"] == int(side != "long" and prev == "long")
        assert r["enter_short"] == int(side == "short" and prev != "short")
        assert r["exit_short"] == int(side != "short" and prev == "short")
    assert sum(r["enter_long"] + r["enter_short"] for r in rows) >= 1


def test_signals_written_before_v2_are_shown_without_a_position(lake, capsys):
    assert main(["signals", "--lake", str(lake), "--format", "json", "--model", "hope_v1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["symbol"] == "BTC/USDT" and row["direction"] == "" and row["weight"] is None
    assert 0 <= row["confidence"] < 1  # a function of the forecast alone: computed for old rows too
    assert row["enter_long"] == row["exit_long"] == 0


def test_help_has_examples():
    from commands.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["signals"].format_help()
    for needle in ("examples:", "--format", "--last", "confidence", "enter_long", "mv_partial"):
        assert needle in text
