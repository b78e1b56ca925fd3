"""Delivery against a real HTTP receiver: Slack and Discord payloads, retries with backoff and Retry-After,
refusals, timeouts, a full queue, a dead webhook, and webhook URLs that never appear in a log line."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

import pytest

from alerts.delivery import RetryPolicy, Webhook, parse_webhooks, post, retry_after
from alerts.engine import Alerter
from alerts.payloads import format_for
from continuum.config import ConfigError
from continuum.schema import Alert, decode
from tests.alerts.conftest import SECRET, T0, make_config, story, story_keys
from tests.services.webhook import Reply

ALERT = Alert("vol_spike:hope:binance:BTC/USDT:1", T0 + 10, "vol_spike", "BTC/USDT", "high", "vol <2.5x> & up", T0, {})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_line(caplog, start: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(r.getMessage().startswith(start) for r in caplog.records):
        assert time.monotonic() < deadline, f"no {start} line in {timeout_s}s"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------- payloads
def test_slack_discord_and_json_payloads_as_received(tmp_path, receiver):
    hooks = f"slack={receiver.url('/slack')}, discord={receiver.url('/discord')} {receiver.url('/plain')}"
    with Alerter(make_config(tmp_path, hooks)) as alerter:
        fired = alerter.on_signals(story())
    assert [a.key for a in fired] == story_keys()
    got = receiver.wait_for(3 * len(fired))
    by_path = {p: [r for r in got if r.path == p] for p in ("/slack", "/discord", "/plain")}
    assert all(len(v) == len(fired) for v in by_path.values())
    assert {r.headers["Content-Type"] for r in got} == {"application/json"}
    assert all(r.key in story_keys() for r in got)  # the key rides along as Idempotency-Key

    spike = next(r.json for r in by_path["/slack"] if r.key.startswith("vol_spike"))
    assert spike["text"].startswith("[HIGH] vol_spike BTC/USDT: BTC/USDT 24h vol forecast 5.00% = 2.5x its median")
    section, context = spike["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith(":rotating_light: *vol_spike* | *BTC/USDT* | high\n")
    assert context["elements"][0]["text"] == f"2024-05-02 06:00 UTC | key `{story_keys()[1]}`"

    regime = next(r.json for r in by_path["/discord"] if r.key.startswith("regime_switch"))
    assert regime["content"] == "**[MEDIUM] regime_switch BTC/USDT**"
    (embed,) = regime["embeds"]
    assert embed["title"] == "regime_switch | BTC/USDT" and embed["color"] == 0xF9A825
    assert embed["description"].startswith("BTC/USDT regime normal -> volatile for 1 bar (")
    assert embed["timestamp"] == "2024-05-02T06:00:00+00:00" and embed["footer"]["text"] == story_keys()[0]
    assert regime["allowed_mentions"] == {"parse": []}

    plain = [decode(r.body) for r in by_path["/plain"]]  # the alert itself, as on the alerts topic
    assert sorted(plain, key=lambda a: a.key) == sorted(fired, key=lambda a: a.key)


def test_slack_text_is_escaped():
    from alerts.payloads import slack

    p = slack(ALERT)
    assert "vol &lt;2.5x&gt; &amp; up" in p["text"] and "<" not in p["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("https://hooks.slack.com/services/T0/B0/X", "slack"),
        ("https://discord.com/api/webhooks/1/abc", "discord"),
        ("https://discordapp.com/api/webhooks/1/abc", "discord"),
        ("https://ptb.discord.com/api/webhooks/1/abc", "discord"),
        ("https://discord.com/channels/1", "json"),
        ("https://chat.example.com/hooks/x", "json"),
    ],
)
def test_format_from_the_host(url, fmt):
    assert format_for(url) == fmt


def test_parse_webhooks_and_errors_that_mask_the_url():
    hooks = parse_webhooks(
        "https://hooks.slack.com/services/T0/B0/X,\n slack=https://mm.example.com/hooks/abc discord=http://h:8/d"
    )
    assert [h.format for h in hooks] == ["slack", "slack", "discord"]
    assert "abc" not in repr(hooks[1]) and hooks[1].shown == "https://mm.example.com/hooks/***"
    assert len({h.id for h in hooks}) == 3 and all(len(h.id) == 12 for h in hooks)
    for bad, shown in (
        ("teams=https://x.example.com/hooks/sekrit", "https://x.example.com/hooks/***"),
        ("ftp://x.example.com/hooks/sekrit", "ftp://x.example.com/hooks/***"),
    ):
        with pytest.raises(ValueError) as e:
            parse_webhooks(bad)
        assert "sekrit" not in str(e.value) and shown in str(e.value)
    with pytest.raises(ValueError, match="listed twice"):
        parse_webhooks("http://h/a http://h/a")


def test_bad_webhook_config_is_one_line_without_the_secret(tmp_path):
    from continuum.config import load_config

    cfg = load_config(env={"CONTINUUM_ALERTS__WEBHOOKS": "hooks.slack.com/services/T0/B0/s3cr3tTOKEN"})
    with pytest.raises(ConfigError) as e:
        Alerter(cfg, dry_run=True)
    assert str(e.value).startswith("CONTINUUM_ALERTS__WEBHOOKS: alerts.webhooks: hooks.slack.com/services/")
    assert "s3cr3tTOKEN" not in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------- retries
def test_5xx_then_success_backs_off_within_the_jitter_bounds(receiver):
    receiver.script(Reply(500), Reply(502), Reply(503), Reply(200))
    policy = RetryPolicy(tries=5, backoff_s=0.2, backoff_max_s=0.3, timeout_s=2)
    t = time.monotonic()
    out = post(Webhook(receiver.url(), "json"), ALERT, policy, rng=random.Random(1))
    assert (out.status, out.tries, out.http) == ("delivered", 4, 200)
    gaps = [b.t - a.t for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    # full jitter: the n-th wait is uniform in [0, min(0.3, 0.2 * 2**(n-1))]: <= 0.2, 0.3, 0.3 (+ the round trip)
    assert all(g <= cap + 0.15 for g, cap in zip(gaps, (0.2, 0.3, 0.3), strict=True)), gaps
    assert time.monotonic() - t < 0.8 + 4 * 0.15
    # the waits themselves: uniform under a doubling cap, so many alerters do not retry in step
    rng = random.Random(0)
    for n, cap in ((1, 0.2), (2, 0.3), (5, 0.3)):
        draws = [policy.backoff(n, rng) for _ in range(2000)]
        assert 0 <= min(draws) < 0.02 * cap and 0.98 * cap < max(draws) <= cap
        assert abs(sum(draws) / len(draws) - cap / 2) < 0.05 * cap


def test_429_retry_after_is_honoured(receiver):
    receiver.script(Reply(429, {"Retry-After": "1"}), Reply(200))
    out = post(Webhook(receiver.url(), "slack"), ALERT, RetryPolicy(tries=3, backoff_s=0.01, backoff_max_s=0.01))
    assert out.status == "delivered" and out.tries == 2
    gap = receiver.requests[1].t - receiver.requests[0].t
    assert 0.95 <= gap < 1.6, gap  # one second as asked, not the 10 ms backoff


def test_discord_429_body_retry_after(receiver):
    receiver.script(Reply(429, {"Content-Type": "application/json"}, b'{"retry_after": 0.6, "global": false}'))
    out = post(Webhook(receiver.url(), "discord"), ALERT, RetryPolicy(tries=2, backoff_s=0.01, backoff_max_s=0.01))
    assert out.status == "delivered"
    assert 0.55 <= receiver.requests[1].t - receiver.requests[0].t < 1.2


def test_retry_after_forms():
    assert retry_after({"Retry-After": "7"}, b"") == 7.0
    assert retry_after({"Retry-After": "Wed, 01 May 2024 00:00:30 GMT"}, b"", now=T0 / 1000) == 30.0
    assert retry_after({}, b'{"retry_after": 1.5}') == 1.5
    assert retry_after({"Retry-After": "soon"}, b"") is None and retry_after({}, b"<html>") is None


def test_4xx_is_a_refusal_not_retried(receiver):
    receiver.script(Reply(404, body=b"no such webhook"))
    out = post(Webhook(receiver.url(), "json"), ALERT, RetryPolicy(tries=5, backoff_s=0.01))
    assert (out.status, out.tries, out.http, len(receiver.requests)) == ("rejected", 1, 404, 1)


def test_connection_refused_gives_up_after_n_tries_in_bounded_time():
    policy = RetryPolicy(tries=4, backoff_s=0.1, backoff_max_s=0.2, timeout_s=1)
    t = time.monotonic()
    out = post(Webhook(f"http://127.0.0.1:{_closed_port()}/hook", "json"), ALERT, policy)
    assert out.status == "gave_up" and out.tries == 4 and out.http is None
    assert "ConnectionRefusedError" in out.error
    assert time.monotonic() - t < 0.1 + 0.2 + 0.2 + 0.5  # three waits under their caps


def test_a_hanging_webhook_times_out_and_never_blocks_the_stream(tmp_path, receiver, caplog):
    hold = threading.Event()
    receiver.script(*[Reply(hold=hold)] * 3)
    cfg = make_config(tmp_path, receiver.url(), tries=2, timeout_s=0.5, redeliver_s=60)
    try:
        with caplog.at_level(logging.INFO, logger="continuum.alerts"):
            alerter = Alerter(cfg, drain_s=5)
            t = time.monotonic()
            fired = alerter.on_signals(story())
            assert time.monotonic() - t < 0.5  # the webhook hangs; the caller does not wait on it
            receiver.wait_for(2)
            _wait_for_line(caplog, "ALERT_UNDELIVERED")  # the second try timed out too: given up
            left = alerter.close()
    finally:
        hold.set()
    assert len(fired) == 3 and left == 0
    undelivered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT_UNDELIVERED")]
    assert len(undelivered) == 1 and "tries=2" in undelivered[0] and "TimeoutError" in undelivered[0]
    assert "2 more queued" in undelivered[0]
    assert len(receiver.requests) == 2  # the two queued behind were not tried against a dead webhook


def test_given_up_and_overflowing_alerts_are_delivered_by_a_later_pass(tmp_path, receiver):
    # first 2 POSTs fail (tries=2: the first alert is given up on); the queue holds 1, so the others wait
    # in the outbox; the sender's next pass (every 0.3 s) brings every alert through
    receiver.script(Reply(503), Reply(503))
    cfg = make_config(tmp_path, receiver.url(), tries=2, queue_size=1, redeliver_s=0.3)
    with Alerter(cfg, drain_s=10) as alerter:
        alerter.on_signals(story())
        deadline = time.monotonic() + 10
        while sorted(set(receiver.keys_seen())) != sorted(story_keys()) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(set(receiver.keys_seen())) == sorted(story_keys())
    assert [r.key for r in receiver.requests if r.key == story_keys()[0]].__len__() == 3  # 2 failures, then sent


def test_webhook_secrets_never_reach_a_log_line(tmp_path, caplog):
    port = _closed_port()
    cfg = make_config(tmp_path, f"slack=http://127.0.0.1:{port}{SECRET}", tries=2, redeliver_s=60)
    with caplog.at_level(logging.DEBUG), Alerter(cfg, drain_s=5) as alerter:
        alerter.on_signals(story())
        _wait_for_line(caplog, "ALERT_UNDELIVERED")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ALERT_UNDELIVERED webhook=http://127.0.0.1:" in text and "/hooks/***/***/***" in text
    for part in SECRET.strip("/").split("/")[1:]:
        assert part not in text
    assert "s3cr3t" not in str(cfg.redacted())


def test_a_library_message_quoting_the_webhook_is_masked():
    import io

    from alerts.delivery import WebhookRedactor

    (hook,) = parse_webhooks(f"https://chat.example.com{SECRET}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(WebhookRedactor([hook]))
    lib = logging.getLogger("some.http.library")
    lib.addHandler(handler)
    try:
        lib.warning("Retrying POST %s after reset; path %s", hook.url, SECRET)
    finally:
        lib.removeHandler(handler)
    line = stream.getvalue()
    assert "https://chat.example.com/hooks/***/***/***" in line and "s3cr3t" not in line and "T0SECRET" not in line
    assert hook.mask(f"error at {hook.url}") == "error at https://chat.example.com/hooks/***/***/***"


def test_an_alert_with_an_outcome_is_never_queued_again(tmp_path, receiver):
    """The race behind a duplicate seen on the real broker: the sender's start-up pass takes an alert from the
    outbox and delivers it before the alerter that fired it offers it; that late offer must not post it again."""
    cfg = make_config(tmp_path, receiver.url(), redeliver_s=60)
    with Alerter(cfg, drain_s=5) as alerter:
        (sender,) = alerter.senders
        fired = alerter.on_signals(story())
        receiver.wait_for(3)
        deadline = time.monotonic() + 5
        while sender.backlog() and time.monotonic() < deadline:
            time.sleep(0.02)
        for a in fired:  # what the alerter's late offer does
            assert sender.offer(a)
        assert sender.backlog() == 0
        time.sleep(0.3)
    assert sorted(receiver.keys_seen()) == sorted(story_keys())  # each once
