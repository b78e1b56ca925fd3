"""The real dashboard (``streamlit run``, as ``continuum dashboard`` starts it) in Debian's headless Chromium.

Fails (never skips) when Chromium cannot start: a dashboard nobody has seen render is not tested.
Screenshots of every page go to a temp dir (and to $CONTINUUM_SCREENSHOTS when set, e.g. docs/img).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from commands.dashboard import command

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = [
    ("signals", "Signals", "Forecasts over time"),
    ("memory", "Memory activity", "Per-level update norms"),
    ("evaluation", "Backtests & evaluation", "Equity curves"),
    ("forensics", "Forensics", "busiest addresses"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(dash_data, tmp_path):
    port = _free_port()
    args = argparse.Namespace(
        port=port, address="127.0.0.1", eval_dir=str(dash_data["eval"]), backtest_dir=str(dash_data["backtest"])
    )
    cmd, env = command(args, str(dash_data["lake"]))
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        "streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text()
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.integration
def test_every_page_renders_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as pw:
        # a fresh profile dir per run (Playwright passes it as --user-data-dir)
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            for slug, title, marker in PAGES:
                # the default page lives at "/": its slug would open Streamlit's "page not found" dialog
                page.goto(f"{server}/" if slug == PAGES[0][0] else f"{server}/{slug}")
                expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=60_000)
                expect(page.get_by_text(marker).first).to_be_visible(timeout=60_000)
                if slug in ("signals", "memory", "evaluation"):
                    expect(page.locator("canvas, svg.marks").first).to_be_visible(timeout=60_000)
                if slug == "signals":
                    # the table is a canvas data grid; its cells exist as an accessibility layer, not as visible text
                    expect(page.get_by_text("BTC/USDT").first).to_be_attached()
                page.wait_for_timeout(1500)  # let Vega finish drawing before the screenshot
                page.screenshot(path=str(shots / f"{slug}.png"), full_page=True)
            # forensics: type a real mainnet address, see the trace graph and its labelled neighbour
            page.goto(f"{server}/forensics")
            box = page.get_by_label("Address")
            box.fill("0x7054b0f980a7eb5b3a6b3446f3c947d80162775c")
            box.press("Enter")
            expect(page.get_by_text("Trace graph")).to_be_visible(timeout=60_000)
            expect(page.locator(".stGraphVizChart svg, [data-testid='stGraphVizChart'] svg").first).to_be_visible(
                timeout=60_000
            )
            expect(page.get_by_text("Addresses reached")).to_be_visible()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "forensics_trace.png"), full_page=True)
        finally:
            browser.close()
    for p in shots.iterdir():
        assert p.stat().st_size > 20_000, f"{p.name} looks blank"
    keep = os.environ.get("CONTINUUM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in shots.iterdir():
            shutil.copy(p, Path(keep) / f"dashboard_{p.name}")
