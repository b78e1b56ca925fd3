"""RPC URLs carry API keys (path, query, userinfo): no error, start-up line or log line shows one."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from commands.cli import main
from continuum.errors import UserError
from ingest.chain import ChainFollower, Rpc
from tests.services.anvil import RangeLimitProxy

KEY = "abcdef0123456789abcdef0123456789"
SECRETS = ("s3cret", KEY, "XYZ")
DEAD = f"http://user:s3cret@127.0.0.1:1/v3/{KEY}?apikey=XYZ"  # nothing listens on port 1


def _clean(text: str) -> bool:
    return not any(s in text for s in SECRETS)


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "chain", "--rpc", DEAD, "--from-block", "0", "--to-block", "1"],
        ["stream", "chain", "--rpc", DEAD, "--max-polls", "1", "--no-lake"],
        pytest.param(  # web3 retries a websocket connect for ~20 s before it gives up
            ["stream", "chain", "--rpc", DEAD.replace("http://", "ws://"), "--max-polls", "1", "--no-lake"],
            marks=pytest.mark.slow,
        ),
        ["backfill", "chain", "--rpc", DEAD.removeprefix("http://"), "--from-block", "0"],  # no scheme
    ],
)
def test_unreachable_node_is_one_masked_line(argv, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("continuum: error: --rpc ")
    assert "127.0.0.1:1" in err  # still says where it tried
    assert _clean(err) and _clean(caplog.text), err


def test_rpc_errors_name_the_masked_url():
    with pytest.raises(UserError) as e:
        Rpc(DEAD)
    assert "http://***@127.0.0.1:1/v3/***?apikey=***" in str(e.value) and _clean(str(e.value))


@pytest.mark.integration
def test_stream_start_up_line_and_logs_are_masked(node, tmp_path, monkeypatch, capsys, caplog):
    """A live node behind a path with a key (the proxy answers on any path), followed from the command line."""
    monkeypatch.chdir(tmp_path)
    proxy = RangeLimitProxy(node.url, max_blocks=10**9)
    url = proxy.url.replace("http://", "http://user:s3cret@") + f"/v3/{KEY}?apikey=XYZ"
    caplog.set_level(logging.DEBUG)  # web3 logs the URL of every request at DEBUG
    try:
        rc = main(["stream", "chain", "--rpc", url, "--from-block", "0", "--max-polls", "1", "--poll", "0.05"])
    finally:
        proxy.close()
    out, err = capsys.readouterr()
    assert rc == 0
    port = proxy.url.rsplit(":", 1)[1]
    assert f"following ethereum at http://***@127.0.0.1:{port}/v3/***?apikey=*** from block 0" in out
    assert "127.0.0.1" in caplog.text  # web3 did log the URL, masked
    assert _clean(out + err + caplog.text)


@pytest.mark.integration
def test_websocket_start_up_logs_are_masked(node, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    url = node.ws_url.replace("ws://", "ws://user:s3cret@") + "/?apikey=XYZ"
    caplog.set_level(logging.INFO)  # web3: "Connecting to: <url>"
    assert main(["stream", "chain", "--rpc", url, "--no-lake", "--max-polls", "1", "--poll", "0.05"]) == 0
    out, err = capsys.readouterr()
    assert "following ethereum at ws://***@127.0.0.1:" in out and "Connecting to: ws://***@" in caplog.text
    assert _clean(out + err + caplog.text)


@pytest.mark.integration
def test_follower_retry_warning_is_masked(node, caplog):
    """When the node goes away mid-run, requests' error quotes the URL's path with the key: never shown."""
    proxy = RangeLimitProxy(node.url, max_blocks=10**9)
    rpc = Rpc(proxy.url + f"/v3/{KEY}?apikey=XYZ")
    f = ChainFollower(rpc, confirmations=0, from_block=0)
    proxy.close()
    with pytest.raises(OSError) as e:  # RpcUnavailable: still an OSError, so pollers retry it
        rpc.head()
    assert "Connection refused" in str(e.value) and _clean(str(e.value)) and e.value.__cause__ is None
    stop = threading.Event()
    t = threading.Thread(target=f.run, kwargs={"poll_s": 0.05, "stop": stop}, daemon=True)
    with caplog.at_level(logging.WARNING):
        t.start()
        deadline = time.monotonic() + 10
        while "unreachable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        t.join(10)
    assert "chain node unreachable" in caplog.text
    assert _clean(caplog.text), caplog.text
