"""The replay source on the real bundled data: freqtrade layouts, gap marking, merged ordering."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import numpy as np
import pytest

from continuum.errors import UserError
from continuum.panel import gap_report
from ingest.replay import list_pairs, load_panel, read_candles, replay_events


def test_bundled_pairs_and_btc_gaps_are_reported():
    pairs = list_pairs("data/binance")
    assert len(pairs) == 8 and "BTC/USDT" in pairs
    p = load_panel("data/binance", symbols=["BTC/USDT"])
    rep = gap_report(p)["BTC/USDT"]
    assert 100 <= rep["missing"] <= 140  # the README: about 120 missing hours
    assert rep["longest"] >= 10
    # never forward-filled: a gap is NaN and not present
    gaps = p.gaps[:, 0]
    assert np.isnan(p.close[gaps, 0]).all() and not p.present[gaps, 0].any()
    assert p.present.sum() == read_candles(pairs["BTC/USDT"]).height


def test_replay_is_time_ordered_across_symbols():
    p = load_panel(
        "data/binance",
        symbols=["BTC/USDT", "ETH/USDT", "SOL/USDT"],
        start=datetime(2020, 8, 10, tzinfo=UTC),
        end=datetime(2020, 8, 14, tzinfo=UTC),
    )
    ev = list(replay_events(p))
    keys = [(e.ts, e.symbol) for e in ev]
    assert keys == sorted(keys)
    assert {e.symbol for e in ev} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    sol_first = min(e.ts for e in ev if e.symbol == "SOL/USDT")
    assert sol_first == int(datetime(2020, 8, 11, 6, tzinfo=UTC).timestamp() * 1000)  # its listing


@pytest.mark.parametrize("fmt", ["feather", "json"])
def test_other_freqtrade_formats(tmp_path, fmt):
    df = read_candles(list_pairs("data/binance")["ETH/USDT"]).head(100)
    if fmt == "feather":
        df.write_ipc(tmp_path / "ETH_USDT-1h.feather")
    else:
        import json

        rows = [[int(r[0].timestamp() * 1000), *r[1:]] for r in df.rows()]

        (tmp_path / "ETH_USDT-1h.json").write_text(json.dumps(rows))
    p = load_panel(tmp_path)
    assert p.symbols == ["ETH/USDT"] and p.present.sum() == 100
    np.testing.assert_allclose(p.close[p.present[:, 0], 0], df["close"].to_numpy())


def test_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_panel(tmp_path / "nope")
    with pytest.raises(UserError, match="no BASE_QUOTE"):
        load_panel(tmp_path)
    shutil.copy(list_pairs("data/binance")["BTC/USDT"], tmp_path / "BTC_USDT-1h.parquet")
    with pytest.raises(UserError, match="DOGE/USDT not in"):
        load_panel(tmp_path, symbols=["DOGE/USDT"])
