"""``continuum alerts --follow --metrics-port``: the alerter's Prometheus endpoint, scraped over real HTTP while the
process runs, agrees with what the webhook receiver saw (posts delivered and failed) and with the story's alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from continuum.lake import Lake
from tests.alerts.conftest import recent_t0, story
from tests.services.cli import cli_env, cli_process, terminate
from tests.services.prometheus import free_port, scrape_until
from tests.services.webhook import Reply

pytestmark = pytest.mark.integration


def test_follow_serves_alerts_posts_inputs_and_backlog(tmp_path, receiver):
    t0 = recent_t0()
    Lake(tmp_path / "lake").append_events(story(t0=t0))
    receiver.script(Reply(503))  # the first post fails its only try: one failed post, redelivered on the next pass
    port = free_port()
    env = cli_env(
        CONTINUUM_LAKE__ROOT=str(tmp_path / "lake"),
        CONTINUUM_ALERTS__STATE_DIR=str(tmp_path / "state"),
        CONTINUUM_ALERTS__WEBHOOKS=receiver.url("/hook"),
        CONTINUUM_ALERTS__VOL_WINDOW="24",
        CONTINUUM_ALERTS__REGIME_HOLD="1",
        CONTINUUM_ALERTS__CONFIDENCE="0.75",
        CONTINUUM_ALERTS__TRIES="1",
        CONTINUUM_ALERTS__REDELIVER_S="0.3",
        CONTINUUM_ALERTS__POLL_S="0.2",
    )
    since = datetime.fromtimestamp(t0 / 1000, UTC).strftime("%Y-%m-%d")
    args = ["alerts", "--follow", "--since", since, "--metrics-port", str(port)]
    posts = {o: ("continuum_webhook_posts_total", (("hook", _hook_id(receiver.url("/hook"))), ("outcome", o)))
             for o in ("delivered", "failed")}  # fmt: skip
    with cli_process(args, tmp_path, env) as p:
        m = scrape_until(p, port, lambda m: m.get(posts["delivered"], 0) >= 3)
        _, err = terminate(p, 60)
    assert p.returncode == 0, err[-2000:]
    assert m[posts["delivered"]] == 3 and m[posts["failed"]] == 1
    assert len(receiver.requests) == 4  # 1 failed + 3 delivered: the counters are the receiver's view
    fired = {dict(k[1])["rule"]: (dict(k[1])["severity"], v) for k, v in m.items() if k[0] == "continuum_alerts_total"}
    assert {r: f for r, f in fired.items() if f[1]} == {
        "regime_switch": ("medium", 1),
        "vol_spike": ("high", 1),
        "signal": ("low", 1),
    }
    assert fired["sanctioned"] == ("high", 0)  # every configured rule is a series from the start
    assert m[("continuum_events_total", (("direction", "in"), ("topic", "signals")))] == 40
    assert m[("continuum_alert_backlog", ())] == 0
    assert "3 fired" in err and "3 posts delivered" in err


def _hook_id(url: str) -> str:
    from alerts.delivery import Webhook

    return Webhook(url, "json").id
