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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from commands.dashboard import command
from continuum.lake import Lake

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
REFRESH_S = 2  # the live test's --refresh: the Signals page re-reads the lake this often
APPEAR_WITHIN_S = 10  # ... and a signal appended to the lake must show within this bound, without a reload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(lake: Path, eval_dir: Path, backtest_dir: Path, log: Path, refresh: float | None = None) -> Iterator[str]:
    """The app as ``continuum dashboard`` starts it, on a free port; yields its URL."""
    port = _free_port()
    args = argparse.Namespace(
        port=port, address="127.0.0.1", eval_dir=str(eval_dir), backtest_dir=str(backtest_dir), refresh=refresh
    )
    cmd, env = command(args, str(lake))
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError("streamlit did not start:\n" + log.read_text()) from None
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(dash_data, tmp_path_factory) -> Iterator[str]:
    with _serve(
        dash_data["lake"], dash_data["eval"], dash_data["backtest"], tmp_path_factory.mktemp("st") / "streamlit.log"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # a fresh profile dir per run (Playwright passes it as --user-data-dir)
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.mark.integration
def test_every_page_renders_in_chromium(server, browser, tmp_path):
    from playwright.sync_api import expect

    shots = tmp_path / "shots"
    shots.mkdir()
    page = browser.new_page()
    for slug, title, marker in PAGES:
        page.goto(f"{server}/{slug}")
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
    page.close()
    for p in shots.iterdir():
        assert p.stat().st_size > 20_000, f"{p.name} looks blank"
    keep = os.environ.get("CONTINUUM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in shots.iterdir():
            shutil.copy(p, Path(keep) / f"dashboard_{p.name}")


@pytest.mark.integration
def test_every_page_url_opens_its_page(server, browser):
    """``/signals``, ``/memory``, ... typed into the address bar open that page, not "Page not found";
    ``/`` opens Signals at ``/signals``."""
    from playwright.sync_api import expect

    page = browser.new_page()
    for path, (slug, title, marker) in [("", PAGES[0])] + [(s, (s, t, m)) for s, t, m in PAGES]:
        page.goto(f"{server}/{path}")
        expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text(marker).first).to_be_visible(timeout=60_000)
        expect(page).to_have_url(f"{server}/{slug}")
        assert page.get_by_text("Page not found").count() == 0, path
    page.close()


@pytest.mark.integration
def test_a_new_signal_appears_without_a_reload(dash_data, browser, tmp_path):
    """The Signals page re-reads the lake every ``REFRESH_S``: a signal appended while it is open shows in the
    table, the latest bar and the lag, within ``APPEAR_WITHIN_S`` and without reloading the page."""
    from playwright.sync_api import expect

    from continuum.schema import Signal

    lake_dir = tmp_path / "lake"
    shutil.copytree(dash_data["lake"], lake_dir)
    lake = Lake(lake_dir)
    last = lake.read("signal").sort("ts").row(-1, named=True)
    with _serve(lake_dir, dash_data["eval"], dash_data["backtest"], tmp_path / "st.log", refresh=REFRESH_S) as url:
        page = browser.new_page()
        page.goto(f"{url}/signals")
        expect(page.get_by_text("BTC/USDT").first).to_be_attached(timeout=60_000)
        expect(page.get_by_text("Latest bar").first).to_be_visible(timeout=60_000)
        assert page.get_by_text("SOL/USDT").count() == 0
        page.evaluate("window.__continuum_marker = 42")  # gone if the page reloads
        ts = last["ts"] + 3_600_000
        new = Signal(
            model=last["model"], exchange=last["exchange"], symbol="SOL/USDT", ts=ts, ret_1h=0.002, ret_24h=0.03,
            vol_24h=0.05, ret_1h_std=0.05 / 24**0.5, ret_24h_std=0.05, regime="volatile",
        )  # fmt: skip
        t0 = time.perf_counter()
        lake.append_events([new])
        expect(page.get_by_text("SOL/USDT").first).to_be_attached(timeout=APPEAR_WITHIN_S * 1000)
        took = time.perf_counter() - t0
        bar = pl.from_epoch(pl.Series([ts]), time_unit="ms")[0]
        expect(page.get_by_text(f"{bar:%Y-%m-%d %H:%M}").first).to_be_visible(timeout=APPEAR_WITHIN_S * 1000)
        assert page.evaluate("window.__continuum_marker") == 42, "the page was reloaded"
        print(f"appended signal visible after {took:.2f} s (refresh every {REFRESH_S} s)")
        (tmp_path / "appear_seconds.txt").write_text(f"{took:.3f}\n")
        keep = os.environ.get("CONTINUUM_MEASURE")
        if keep:
            with open(keep, "a") as f:
                f.write(f"signal_appears_s {took:.3f}\n")
        page.close()
    assert took < APPEAR_WITHIN_S
