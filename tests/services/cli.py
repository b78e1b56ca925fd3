"""Running ``continuum`` as a process in tests, the way a supervisor runs it: this checkout's code, settings
from the environment only, stopped with SIGTERM, and never left behind when a test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_env(**settings: str) -> dict[str, str]:
    """The process environment: this checkout on ``PYTHONPATH``, the caller's ``CONTINUUM_*`` variables dropped (a
    developer's shell must not change what a test sees), ``settings`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUUM_")}
    return {**env, "PYTHONPATH": str(REPO), **settings}


@contextmanager
def cli_process(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``python -m commands.cli ARGS`` with its output captured; killed on the way out if it still runs."""
    cmd = [sys.executable, "-m", "commands.cli", *args]
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def terminate(p: subprocess.Popen, timeout_s: float = 30) -> tuple[str, str]:
    """Stop ``p`` as a supervisor does (SIGTERM) and return its (stdout, stderr) once it has exited."""
    p.send_signal(signal.SIGTERM)
    return p.communicate(timeout=timeout_s)
