"""Every command exists and teaches with --help; bad input exits 2 with one line."""

from __future__ import annotations

import pytest

from commands.cli import COMMANDS, build_parser, main


def _paths():
    for name, spec in COMMANDS.items():
        if isinstance(spec, dict):
            for child in spec:
                yield [name, child]
        else:
            yield [name]


@pytest.mark.parametrize("path", list(_paths()), ids=" ".join)
def test_every_command_has_help_that_teaches(path, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: continuum " + " ".join(path) in out
    assert len(out.splitlines()) > 5


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["evaluate", "--out", "x", "--models", "hopeful"], "unknown model 'hopeful'"),
        (["evaluate", "--out", "x", "--symbols", "BTC/EUR"], "BTC/EUR not in"),
        (["evaluate", "--out", "x", "--seeds", "0"], "--seeds 0"),
        (
            ["evaluate", "--out", "x", "--data", "data/binance", "--symbols", "BTC/USDT,ETH/USDT"]
            + ["--start", "2021-01-01", "--end", "2021-02-01", "--new-assets", "DOGE/USDT"],
            "--new-assets: DOGE/USDT is not in the data",
        ),
        (["demo", "--start", "yesterday"], "not an ISO date"),
        (["pretrain", "--data", "/nonexistent", "--until", "2019-01-01", "--out", "x.pt"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import pathlib

    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(tmp_path / "lake"))
    repo = pathlib.Path(__file__).resolve().parents[2]
    argv = [a.replace("data/binance", str(repo / "data/binance")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_help_loads_no_heavy_library():
    """`continuum --help` builds every subcommand's parser without importing torch, polars, ccxt, web3...
    (they cost ~2 s and ~900 MB); each command imports them when it runs."""
    import subprocess
    import sys

    heavy = ("torch", "polars", "numpy", "ccxt", "web3", "kafka", "streamlit", "matplotlib", "pandas")
    code = (
        "import sys; from commands.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the parser imported {out}"
