"""The JSON a webhook receives for one alert: Slack, Discord, or the alert itself.

- ``slack`` (incoming webhooks; Mattermost and Rocket.Chat take the same): ``text`` (the notification and
  the fallback) and ``blocks``: a section with the rule, asset, severity and message, a context line with
  the bar time and the key.
- ``discord`` (channel webhooks): ``content`` (one line) and one ``embed`` (title, message, severity
  colour, the bar time as its timestamp, the key in its footer); ``allowed_mentions`` is empty, so nothing
  in a message can ping ``@everyone``.
- ``json``: the alert exactly as it travels on the ``alerts`` topic (:func:`continuum.schema.encode`:
  ``kind``, ``v``, ``key``, ``ts``, ``rule``, ``symbol``, ``severity``, ``message``, ``event_ts``,
  ``detail``), so a receiver can decode it with the schema and de-duplicate on ``key``.

Every request also carries the key in an ``Idempotency-Key`` header (:mod:`alerts.delivery`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from continuum.schema import Alert, encode

FORMATS = ("slack", "discord", "json")
_EMOJI = {"high": ":rotating_light:", "medium": ":warning:", "low": ":information_source:"}
_COLOR = {"high": 0xD32F2F, "medium": 0xF9A825, "low": 0x1976D2}


def headline(a: Alert) -> str:
    """``[HIGH] vol_spike BTC/USDT``."""
    return f"[{a.severity.upper()}] {a.rule} {a.symbol}"


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(a: Alert) -> dict[str, Any]:
    when = f"{_when(a.event_ts):%Y-%m-%d %H:%M} UTC"
    return {
        "text": _slack_escape(f"{headline(a)}: {a.message}")[:3000],
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{_EMOJI[a.severity]} *{a.rule}* | *{_slack_escape(a.symbol)}* | {a.severity}\n"
                    + _slack_escape(a.message)[:2800],
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{when} | key `{a.key}`"[:3000]}]},
        ],
    }


def discord(a: Alert) -> dict[str, Any]:
    return {
        "content": f"**{headline(a)}**"[:2000],
        "embeds": [
            {
                "title": f"{a.rule} | {a.symbol}"[:256],
                "description": a.message[:4096],
                "color": _COLOR[a.severity],
                "timestamp": _when(a.event_ts).isoformat(),
                "fields": [{"name": "severity", "value": a.severity, "inline": True}],
                "footer": {"text": a.key[:2048]},
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def body(a: Alert, fmt: str) -> bytes:
    """The POST body for ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return encode(a)
    if fmt == "slack":
        return orjson.dumps(slack(a))
    if fmt == "discord":
        return orjson.dumps(discord(a))
    raise ValueError(f"unknown webhook format {fmt!r}; known: {', '.join(FORMATS)}")


def format_for(url: str) -> str:
    """The format a webhook URL's host implies: Slack's and Discord's own hosts, plain JSON elsewhere."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == "hooks.slack.com":
        return "slack"
    if host.removeprefix("ptb.").removeprefix("canary.") in ("discord.com", "discordapp.com") and (
        parts.path.startswith("/api/webhooks/")
    ):
        return "discord"
    return "json"
