"""No duplicate after a restart, no loss either: in process, and with ``continuum alerts --follow`` as a real
process that is stopped with SIGTERM, or killed with SIGKILL while a POST is in flight.

The receiver records every request on arrival, as a webhook service acts on it. The guarantee under test
(docs/alerts.md): every key reaches every webhook; a key reaches it twice only if the process died between
sending it and journalling the answer, which the SIGKILL test provokes on purpose.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl

from alerts.engine import Alerter
from continuum.lake import Lake
from tests.alerts.conftest import T0, make_config, recent_t0, story, story_keys
from tests.services.cli import cli_env
from tests.services.webhook import Reply


def test_restart_in_process_posts_each_key_once(tmp_path, receiver):
    cfg = make_config(tmp_path, receiver.url())
    signals = story()
    with Alerter(cfg) as a:
        assert [x.key for x in a.on_signals(signals[:32])] == story_keys()[:2]
        state = dict(a.streams)
    receiver.wait_for(2)
    with Alerter(cfg) as b:
        assert b.streams == state  # the rule state came back whole
        # the same signals again (an at-least-once producer repeats itself after its own restart), then new ones
        assert [x.key for x in b.on_signals(signals)] == story_keys()[2:]
    receiver.wait_for(3)
    time.sleep(0.2)
    assert Counter(receiver.keys_seen()) == dict.fromkeys(story_keys(), 1)
    # the outbox is the lake's alert table, with the columns the dashboard reads
    table = Lake(cfg.lake.root).read("alert")
    assert sorted(table["key"]) == sorted(story_keys())
    assert {"ts", "rule", "symbol", "severity", "message", "key"} <= set(table.columns)
    assert table.schema["ts"] == pl.Int64 and table["severity"].to_list().count("high") == 1


def test_alerts_not_delivered_before_a_stop_are_posted_by_the_next_start(tmp_path, receiver):
    cfg = make_config(tmp_path, receiver.url(), tries=1, redeliver_s=60)
    receiver.script(Reply(503))  # the webhook is down while the first alerter runs
    with Alerter(cfg, drain_s=2) as a:
        a.on_signals(story())
        receiver.wait_for(1)
        time.sleep(0.3)
    assert len(receiver.requests) == 1  # given up on the first; the two behind it were kept back
    with Alerter(cfg):  # the webhook is back
        receiver.wait_for(4)
    time.sleep(0.2)
    delivered = [r.key for r in receiver.requests[1:]]
    assert sorted(delivered) == sorted(story_keys())  # all three, once each, in the order they fired
    assert delivered == story_keys()


def test_a_webhook_added_later_gets_new_alerts_not_the_backlog(tmp_path, receiver):
    with Alerter(make_config(tmp_path, receiver.url("/old"))) as a:
        a.on_signals(story()[:32])
    receiver.wait_for(2)
    with Alerter(make_config(tmp_path, f"{receiver.url('/old')},{receiver.url('/new')}")) as b:
        b.on_signals(story())
    receiver.wait_for(4)
    time.sleep(0.2)
    paths = Counter(r.path for r in receiver.requests)
    assert paths == {"/old": 3, "/new": 1}


# ---------------------------------------------------------------------------------------- as a process
def _env(tmp_path: Path, url: str) -> dict[str, str]:
    return cli_env(
        CONTINUUM_LAKE__ROOT=str(tmp_path / "lake"),
        CONTINUUM_ALERTS__STATE_DIR=str(tmp_path / "state"),
        CONTINUUM_ALERTS__WEBHOOKS=url,
        CONTINUUM_ALERTS__VOL_WINDOW="24",
        CONTINUUM_ALERTS__REGIME_HOLD="1",
        CONTINUUM_ALERTS__CONFIDENCE="0.75",
        CONTINUUM_ALERTS__POLL_S="0.2",
        CONTINUUM_ALERTS__BACKOFF_S="0.05",
        CONTINUUM_ALERTS__TIMEOUT_S="30",
    )


def _alerts(tmp_path: Path, url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "alerts", "--follow", *args],
        cwd=tmp_path,
        env=_env(tmp_path, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(p: subprocess.Popen, timeout_s: float = 60) -> str:
    out, err = p.communicate(timeout=timeout_s)
    assert p.returncode == 0, err
    return err


def test_killed_mid_delivery_then_restarted(tmp_path, receiver):
    """SIGKILL while the second POST is in flight: after the restart every key has arrived, the one in
    flight twice (at-least-once), the others once; the third, fired but never sent, is sent by the restart."""
    Lake(tmp_path / "lake").append_events(story())
    hold = threading.Event()
    receiver.script(Reply(), Reply(hold=hold))
    p = _alerts(tmp_path, receiver.url(), "--once", "--since", "2024-05-01")
    try:
        receiver.wait_for(2, timeout_s=60)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        hold.set()
    assert p.returncode == -signal.SIGKILL
    first, second, third = story_keys()
    assert receiver.keys_seen() == [first, second]

    err = _finish(_alerts(tmp_path, receiver.url(), "--once"))  # no --since: the state says where it was
    assert "0 fired; 2 posts delivered" in err, err
    assert Counter(receiver.keys_seen()) == {first: 1, second: 2, third: 1}
    assert receiver.keys_seen()[2:] == [second, third]
    assert sorted(Lake(tmp_path / "lake").read("alert")["key"]) == sorted(story_keys())


def test_stopped_and_started_again_posts_each_key_once(tmp_path, receiver):
    """A live run on recent bars: started on a lake with history (which only warms the rules up), new bars
    arrive, SIGTERM, more bars arrive while it is down, started again: each alert exactly once."""
    t0 = recent_t0(48)
    signals = story(t0=t0)
    lake = Lake(tmp_path / "lake")
    lake.append_events(signals[:25])
    p = _alerts(tmp_path, receiver.url())
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "state" / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the first start has read the lake (history: warm-up only)
        lake.append_events(signals[25:32])
        receiver.wait_for(2, timeout_s=30)
        p.send_signal(signal.SIGTERM)
        err = _finish(p, 30)
    finally:
        p.kill()
    assert "2 fired (regime_switch 1, vol_spike 1); 2 posts delivered" in err, err
    assert f"ALERT rule=vol_spike severity=high symbol=BTC/USDT key={story_keys(t0=t0)[1]} event_time=" in err

    lake.append_events(signals[32:])  # while no alerter runs
    err = _finish(_alerts(tmp_path, receiver.url(), "--once"))
    assert "1 fired (signal 1); 1 posts delivered" in err, err
    err = _finish(_alerts(tmp_path, receiver.url(), "--once"))  # nothing new: nothing posted
    assert "0 fired; 0 posts delivered" in err, err
    assert Counter(receiver.keys_seen()) == dict.fromkeys(story_keys(t0=t0), 1)
    assert t0 > T0
