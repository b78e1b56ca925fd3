"""Forensics alerts on newly ingested transfers: real mainnet blocks 17173049-17173050 (ethereum-etl's
sample export, tests/data/SOURCES.md). Block 17173049 is in the lake when the alerter starts; block
17173050 is ingested after. The alerts are the forensics query's own hits (not a second copy of the
rules), recomputed here from the raw export, and each is posted once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import polars as pl

from alerts.engine import Alerter, follow_lake
from continuum.lake import Lake, events_frame
from continuum.schema import decode
from forensics.etl_import import read_export
from forensics.queries import alerts as forensic_alerts
from tests.alerts.conftest import make_config

ETL = Path(__file__).resolve().parents[1] / "data" / "ethereum_etl_mainnet_samples"
OLD, NEW = 17173049, 17173050
BIG_USDT = ("0xf4569831163aa97bb407e69b68ae8e3174af435e42f8286d25a79fe85700a113", 139)  # 600,321.88 USDT


def _blocks():
    events = read_export(ETL)
    return [e for e in events if e.block_number == OLD], [e for e in events if e.block_number == NEW]


def _busiest(transfers) -> str:
    return Counter(a for t in transfers for a in {t.from_address, t.to_address}).most_common(1)[0][0]


def test_newly_ingested_transfers_alert_once(tmp_path, receiver):
    old, new = _blocks()
    watched = _busiest(new)
    # the export's two folders hold the same transactions (JSON lines and CSV): the lake keeps each once
    want_watch = len({(t.tx_hash, t.log_index) for t in new if watched in (t.from_address, t.to_address)})
    cfg = make_config(tmp_path, f"json={receiver.url()}", rules="large,watch,sanctioned,mixer_deposit", watch=watched)
    lake = Lake(cfg.lake.root)
    lake.append_events(old)
    with Alerter(cfg) as a:
        follow_lake(a, lake, once=True)  # first start: what is in the lake is history, nothing fires
        assert a.fired == {} and a.cursors["chains"]["ethereum"]["block"] == NEW
        lake.append_events(new)  # block 17173050 is ingested
        follow_lake(a, lake, once=True)
        follow_lake(a, lake, once=True)  # the cursor block is read again: no repeat
        fired = dict(a.fired)
    assert fired == {"large": 1, "watch": want_watch}
    got = receiver.wait_for(1 + want_watch)
    time.sleep(0.2)
    assert len(receiver.requests) == 1 + want_watch and len(set(receiver.keys_seen())) == len(receiver.requests)

    large = decode(next(r.body for r in got if r.key.startswith("large:")))
    assert large.key == f"large:ethereum:{BIG_USDT[0]}:{BIG_USDT[1]}" and large.severity == "low"
    assert large.symbol == "USDT" and large.detail["value"] == 600321.88 and large.detail["chain"] == "ethereum"
    assert "600,321.88 USDT" in large.message and "(MEV Bot: 0xA69...78C)" in large.message
    assert "value >= 250000.0 USDT" in large.message
    assert large.event_ts == next(t.ts for t in new if (t.tx_hash, t.log_index) == BIG_USDT)

    # the same hits as the forensics query on the new block, key for key
    hits = forensic_alerts(
        lake.scan("transfer").filter(pl.col("block_number") == NEW).collect(),
        rules=("large", "watch", "sanctioned", "mixer_deposit"),
        watch=(watched,),
    )
    want = {f"{r}:ethereum:{h}:{i}" for r, h, i in hits.select("rule", "tx_hash", "log_index").iter_rows()}
    assert set(receiver.keys_seen()) == want


def test_transfer_events_from_the_bus_give_the_same_alerts(tmp_path):
    _, new = _blocks()
    cfg = make_config(tmp_path, rules="large,watch", watch=_busiest(new))
    with Alerter(cfg, dry_run=True) as a:
        from_events = {x.key for x in a.on_transfers(new)}
        assert a.on_transfers(new) == []  # a redelivered batch fires nothing
    with Alerter(make_config(tmp_path / "b", rules="large,watch", watch=_busiest(new)), dry_run=True) as b:
        from_frame = {x.key for x in b.on_transfer_frame(events_frame(new))}
    assert from_events == from_frame and len(from_events) > 1


def test_a_block_ingested_in_two_appends_alerts_each_transfer_once(tmp_path):
    old, new = _blocks()
    watched = _busiest(new)
    cfg = make_config(tmp_path, rules="large,watch", watch=watched)
    lake = Lake(cfg.lake.root)
    lake.append_events(old)
    half = len(new) // 2
    with Alerter(cfg) as a:
        follow_lake(a, lake, once=True)
        lake.append_events(new[:half])
        follow_lake(a, lake, once=True)
        lake.append_events(new[half:])  # the rest of the same block: the cursor block is read again
        follow_lake(a, lake, once=True)
        fired = sum(a.fired.values())
    want = {(t.tx_hash, t.log_index) for t in new if watched in (t.from_address, t.to_address)}
    assert fired == len(want) + 1 == Lake(cfg.lake.root).read("alert").height
