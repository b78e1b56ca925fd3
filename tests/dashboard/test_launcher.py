"""``continuum dashboard`` as a real process: it stops its Streamlit server when it is stopped, the server does
not outlive it, and a busy port is one clear line and exit code 2 before anything starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "commands.cli", "dashboard", "--port", str(port), "--lake", str(tmp_path / "lake"),
           "--eval-dir", str(tmp_path / "eval"), "--backtest-dir", str(tmp_path / "bt"), *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie no one has reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, within: float) -> float:
    t0 = time.monotonic()
    while _alive(pid):
        if time.monotonic() - t0 > within:
            raise AssertionError(f"process {pid} still running {within:.0f} s later")
        time.sleep(0.1)
    return time.monotonic() - t0


def _started(proc: subprocess.Popen) -> tuple[str, int]:
    """The launcher's announcement line (printed once the server answers) and the server's pid."""
    seen = []
    for line in proc.stdout:  # Streamlit's own banner shares the pipe and comes first
        seen.append(line)
        if line.startswith("Continuum dashboard on "):
            break
    assert seen and seen[-1].startswith("Continuum dashboard on http://127.0.0.1:"), ("".join(seen), proc.stderr.read())
    (server,) = _children(proc.pid)
    return seen[-1], server


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_launcher_stops_its_server(tmp_path, sig):
    port = _free_port()
    proc = _launch(tmp_path, port)
    try:
        _, server = _started(proc)
        os.kill(proc.pid, sig)  # by pid, as a supervisor (or `kill`) would
        assert proc.wait(20) == 0
        _wait_gone(server, 5)  # the launcher reaped it before exiting
        assert _port_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_server_does_not_outlive_a_killed_launcher(tmp_path):
    """SIGKILL leaves the launcher no chance to forward anything: the kernel's parent-death signal stops the server."""
    port = _free_port()
    proc = _launch(tmp_path, port)
    server = None
    try:
        _, server = _started(proc)
        proc.kill()
        proc.wait(10)
        took = _wait_gone(server, 15)
        print(f"server gone {took:.2f} s after its launcher was killed")
    finally:
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)


def test_a_busy_port_is_one_line_and_exit_code_2(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _launch(tmp_path, port)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out == ""  # no "dashboard on http://..." for a server that never ran
    assert err.count("\n") == 1 and err.startswith(f"continuum: error: port {port} on 127.0.0.1 is in use"), err
    assert "--port" in err


def test_metrics_show_the_server_up_and_the_newest_signals_age(tmp_path):
    """``--metrics-port``: up is the server's health check when scraped (1 while it serves, 0 once it is gone), and
    the newest signal's age follows the lake; the endpoint closes with the launcher."""
    from continuum.lake import Lake
    from continuum.schema import Signal
    from tests.services.prometheus import scrape

    hour = 3_600_000
    bar = (int(time.time() * 1000) // hour - 3) * hour  # three hours ago
    Lake(tmp_path / "lake").append_events([Signal("hope", "binance", "BTC/USDT", bar, 0.0, 0.01, 0.02, 0.004, 0.02)])
    port, prom = _free_port(), _free_port()
    proc = _launch(tmp_path, port, "--metrics-port", str(prom))
    try:
        _, server = _started(proc)
        m = scrape(prom)
        assert m[("continuum_dashboard_up", ())] == 1
        assert abs(m[("continuum_signal_age_seconds", ())] - (time.time() - bar / 1000)) < 30
        os.kill(server, signal.SIGKILL)  # the server dies under the launcher: up reads 0 before the launcher exits
        down = scrape(prom)
        assert down == {} or down[("continuum_dashboard_up", ())] == 0
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _port_free(prom)
