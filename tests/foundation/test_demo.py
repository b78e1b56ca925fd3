"""`continuum demo` end to end on a small slice of the bundled data (the shipped meta-weights)."""

from __future__ import annotations

import json

import polars as pl
import torch

from commands.cli import main
from continuum.lake import Lake

torch.set_num_threads(1)


def test_demo_end_to_end_on_a_small_slice(tmp_path, monkeypatch, capsys):
    lake = tmp_path / "lake"
    out = tmp_path / "demo"
    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(lake))
    rc = main(
        [
            "demo",
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--start",
            "2023-05-01",
            "--end",
            "2023-07-01",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| hope |" in printed and "continuum dashboard --lake" in printed.replace(
        "/continuum dashboard", "continuum dashboard"
    )
    for f in ("report.md", "demo.png", "equity.png", "tearsheet.png", "backtest.json", "equity.parquet"):
        assert (out / f).stat().st_size > 0, f
    sig = Lake(lake).read("signal")
    assert set(sig["symbol"]) == {"BTC/USDT", "ETH/USDT"} and set(sig["model"]) == {"hope"}
    # one signal per (asset, bar) once the features have warmed up, none twice
    assert sig.select(pl.struct("symbol", "ts").n_unique()).item() == sig.height > 2 * 24 * 40
    assert (sig["vol_24h"] > 0).all() and sig["ret_1h"].is_finite().all()
    # each carries what to hold: the feed rule's weight, its side and a confidence (docs/signals.md)
    assert sig["weight"].is_not_null().all() and set(sig["direction"]) <= {"long", "short", "neutral"}
    assert sig["confidence"].is_between(0, 1).all()
    act = json.loads(sig["activity"][-1])
    assert {"mem_update_norm", "cms_l0_update_norm", "surprise"} <= set(act)
    doc = json.loads((out / "backtest.json").read_text())
    assert {"buy_and_hold", "vol_target_long"} <= set(doc["strategies"])
    # the report carries the forecast-quality table with real numbers for the model and the naive reference
    report = (out / "report.md").read_text()
    rows = [ln for ln in report.splitlines() if ln.startswith("| hope |") or ln.startswith("| naive")]
    assert len(rows) == 2 and all(float(r.split("|")[3]) > 0 for r in rows), rows
