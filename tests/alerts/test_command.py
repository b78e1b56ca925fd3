"""``continuum alerts``: bad settings are one line and exit 2 (secrets masked), --send-test, --dry-run."""

from __future__ import annotations

import os

import pytest

from commands.cli import main
from continuum.lake import Lake
from tests.alerts.conftest import SECRET, story, story_keys
from tests.services.webhook import Reply


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(argv, **env)``: run the command line in tmp_path with CONTINUUM_ALERTS__<KEY>=value variables;
    returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CONTINUUM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(tmp_path / "lake"))

    def run(argv: list[str], **env: str) -> tuple[int, str, str]:
        for k, v in env.items():
            monkeypatch.setenv(f"CONTINUUM_ALERTS__{k.upper()}", v)
        code = main(["alerts", *argv])
        got = capsys.readouterr()
        return code, got.out, got.err

    return run


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ([], {"webhooks": f"hooks.slack.com{SECRET}"}, "CONTINUUM_ALERTS__WEBHOOKS: alerts.webhooks: hooks.slack.com/"),
        ([], {"webhooks": f"teams=https://x.example.com{SECRET}"}, "teams= before https://x.example.com/hooks/***"),
        (["--follow"], {"rules": "signal,typo"}, "alerts.rules: unknown rule(s) typo; known: signal,"),
        (["--follow"], {"vol_spike": "1.0"}, "alerts.vol_spike: 1.0 must be > 1"),
        (
            ["--follow"],
            {"confidence": "high"},
            "CONTINUUM_ALERTS__CONFIDENCE: alerts.confidence: 'high' is not a number",
        ),
        (["--follow"], {"large": "WETH"}, "alerts.large: 'WETH' is not SYMBOL=AMOUNT"),
        (["--follow", "--watch", "0x123"], {}, "--watch: alerts.watch:"),
        (["--once"], {}, "--once needs --follow"),
        (["--rules", "vol_spike"], {}, "vol_spike run on the signal feed: add --follow"),
        (["--follow", "--start", "2024-01-01"], {}, "--start filters the listing of past hits"),
        (["--follow", "--since", "May"], {}, "--since 'May' is not an ISO date"),
        (["--send-test"], {}, "no webhooks to test: set [alerts].webhooks"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, argv, env, needle):
    code, out, err = cli(argv, **env)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("continuum: error: "), err
    assert needle in lines[0], lines[0]
    assert "T0SECRET99" not in err + out and "s3cr3tTOKEN" not in err + out and "Traceback" not in err


def test_send_test_posts_one_alert_per_webhook(cli, receiver):
    hooks = f"slack={receiver.url('/s' + SECRET)}, discord={receiver.url('/d')}"
    code, out, err = cli(["--send-test"], webhooks=hooks)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"slack    http://127.0.0.1:{receiver.port}/s/hooks/***/***/***: delivered (HTTP 200")
    assert lines[1].startswith(f"discord  http://127.0.0.1:{receiver.port}/***: delivered (HTTP 200, 1 try)")
    slack, discord = sorted(receiver.requests, key=lambda r: r.path, reverse=True)
    assert slack.json["text"].startswith("[LOW] test TEST: test alert from continuum on ")
    assert discord.json["embeds"][0]["footer"]["text"].startswith("test:")
    assert "T0SECRET99" not in out + err

    receiver.script(Reply(404, body=b"Unknown Webhook"))
    code, out, _ = cli(["--send-test"], webhooks=receiver.url("/gone"), tries="3")
    assert code == 1 and ": rejected (HTTP 404, 1 try)" in out


def test_dry_run_replay_logs_alerts_posts_and_writes_nothing(cli, receiver, tmp_path, caplog):
    Lake(tmp_path / "lake").append_events(story())
    env = {"webhooks": receiver.url(), "vol_window": "24", "regime_hold": "1", "confidence": "0.75"}
    code, out, err = cli(["--follow", "--once", "--dry-run", "--since", "2024-05-01"], **env)
    assert code == 0, err
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT rule=")]
    assert [line.split(" key=")[1].split()[0] for line in logged] == story_keys()
    assert "3 fired (regime_switch 1, signal 1, vol_spike 1); 0 posts delivered" in err
    assert "[dry run]" in err and receiver.requests == []
    assert not (tmp_path / ".continuum").exists() and not (tmp_path / "lake" / "kind=alert").exists()
