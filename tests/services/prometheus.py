"""Scraping a command's ``--metrics-port`` over real HTTP in tests: a free port, and the parsed exposition."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, timeout_s: float = 2.0) -> Samples:
    """``{(sample name, sorted labels): value}`` from http://127.0.0.1:PORT/metrics; ``{}`` while nothing answers."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s).read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def scrape_until(proc: subprocess.Popen, port: int, done: Callable[[Samples], bool], within_s: float = 60.0) -> Samples:
    """Scrape ``port`` every 0.2 s until ``done(samples)``; returns those samples. If ``proc`` exits first or time
    runs out, it is killed and the test fails with the end of its stderr (never blocking on a live process)."""
    deadline = time.monotonic() + within_s
    while not done(m := scrape(port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited {proc.returncode}" if proc.poll() is not None else f"no answer within {within_s:.0f} s"
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"{why}; last scrape {m}; stderr: {(err or '')[-2000:]}")
        time.sleep(0.2)
    return m
