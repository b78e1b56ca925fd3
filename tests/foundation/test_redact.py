"""URL masking (continuum.redact): node and exchange URLs carry API keys, and none may reach a log or a message."""

from __future__ import annotations

import logging

import pytest

from continuum.redact import RedactFilter, mask_url, redact

KEY = "9aa3d95b3bc440fa88ea12eaa4456161"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"https://mainnet.infura.io/v3/{KEY}", "https://mainnet.infura.io/v3/***"),
        ("https://user:pass@host/path?apikey=XYZ", "https://***@host/path?apikey=***"),
        (f"wss://mainnet.infura.io/ws/v3/{KEY}", "wss://mainnet.infura.io/ws/v3/***"),
        ("https://eth-mainnet.g.alchemy.com/v2/AbCdEf-GhIjKlMn_OpQrStUv", "https://eth-mainnet.g.alchemy.com/v2/***"),
        (
            "https://eth.getblock.io/0a1b2c3d-4e5f-6789-abcd-ef0123456789/mainnet/",
            "https://eth.getblock.io/***/mainnet/",
        ),
        ("https://rpc.ankr.com/eth/" + "ab12" * 16, "https://rpc.ankr.com/eth/***"),
        (
            "https://api.etherscan.io/api?module=proxy&apikey=XYZ#t",
            "https://api.etherscan.io/api?module=***&apikey=***#***",
        ),
        ("http://u@127.0.0.1:8545/?token&x=1", "http://***@127.0.0.1:8545/?***&x=***"),
        (f"mainnet.infura.io:443/v3/{KEY}", "mainnet.infura.io:443/v3/***"),  # no scheme: host[:port]/path
    ],
)
def test_mask_url_keeps_scheme_host_port_and_hides_the_rest(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize("url", ["http://127.0.0.1:8545", "ws://[::1]:8546/ws", "https://eth.example/rpc/mainnet/v3"])
def test_mask_url_leaves_urls_without_secrets_alone(url):
    assert mask_url(url) == url


def test_redact_masks_urls_in_text_and_a_known_urls_bare_path():
    url = f"http://user:s3cret@127.0.0.1:1/v3/{KEY}?apikey=XYZ"
    pool = "HTTPConnectionPool(host='127.0.0.1', port=1)"
    requests_style = f"{pool}: Max retries exceeded with url: /v3/{KEY}?apikey=XYZ"
    assert redact(requests_style, url).endswith("with url: /v3/***?apikey=***")
    web3_style = f"Could not connect to: {url}. Retries exceeded max of 5."
    got = redact(web3_style)  # no URL given: every URL in the text is masked anyway
    assert got == "Could not connect to: http://***@127.0.0.1:1/v3/***?apikey=***. Retries exceeded max of 5."
    assert redact("nothing to hide", url, None) == "nothing to hide"


def test_redact_filter_masks_library_log_records_and_tracebacks(caplog):
    url = f"wss://user:s3cret@eth.example/ws/{KEY}"
    lib = logging.getLogger("some.library")
    caplog.handler.addFilter(RedactFilter(url))
    try:
        with caplog.at_level(logging.INFO):
            lib.info("Connecting to: %s", url)
            try:
                raise OSError(f"cannot open {url}")
            except OSError:
                lib.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert "Connecting to: wss://***@eth.example/ws/***" in caplog.text
    assert "s3cret" not in caplog.text and KEY not in caplog.text
