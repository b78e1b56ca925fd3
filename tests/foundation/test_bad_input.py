"""Bad files and bad settings: one line naming the file, variable or option, exit code 2, no traceback.

Every case fails before any model work: a truncated or foreign data file (Parquet, Feather, JSON) in
``--data``, a corrupt ``--pretrained`` or resume checkpoint (never with advice to load it unsafely), an
invalid configuration value (named by the variable, file or option that set it), a bad ``--signals`` or
``--regimes`` file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from commands.cli import main

REPO = Path(__file__).resolve().parents[2]
BTC = REPO / "data" / "binance" / "BTC_USDT-1h.parquet"
PRETRAINED = REPO / "data" / "hope_pretrained.pt"
SMALL = ["--symbols", "BTC/USDT", "--start", "2021-01-01", "--end", "2021-02-01"]


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(argv)``: run the command line in tmp_path, check exit 2 and one clean line; return that line."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CONTINUUM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONTINUUM_LAKE__ROOT", str(tmp_path / "lake"))

    def run(argv: list[str]) -> str:
        assert main(argv) == 2
        got = capsys.readouterr()
        lines = got.err.strip().splitlines()
        assert len(lines) == 1, got.err
        assert lines[0].startswith("continuum: error: "), lines
        assert "Traceback" not in got.err + got.out
        assert "weights_only" not in got.err
        return lines[0]

    return run


def _truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


# ---------------------------------------------------------------------------------------- --data files
@pytest.mark.parametrize("command", ["evaluate", "backtest", "demo"])
def test_truncated_parquet_in_data_dir_names_the_file(command, cli, tmp_path):
    _truncated(BTC, tmp_path / "data" / "x" / "BTC_USDT-1h.parquet")
    line = cli([command, "--data", "data/x", "--out", "out", "--quiet", *SMALL])
    assert "data/x/BTC_USDT-1h.parquet: not a readable Parquet file (" in line


def test_feather_and_json_that_are_not_candles_name_the_file(cli, tmp_path):
    import polars as pl

    d = tmp_path / "fe"
    d.mkdir()
    pl.read_parquet(BTC).head(500).write_ipc(tmp_path / "full.feather")
    _truncated(tmp_path / "full.feather", d / "BTC_USDT-1h.feather")
    line = cli(["evaluate", "--data", "fe", "--out", "out", *SMALL])
    assert "fe/BTC_USDT-1h.feather: not a readable Feather file" in line

    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "BTC_USDT-1h.json").write_bytes(PRETRAINED.read_bytes()[:300])  # binary, not JSON
    assert "js/BTC_USDT-1h.json: not valid JSON" in cli(["evaluate", "--data", "js", "--out", "out", *SMALL])

    (tmp_path / "js" / "BTC_USDT-1h.json").write_text('{"BTC": [1, 2, 3]}')
    line = cli(["evaluate", "--data", "js", "--out", "out", *SMALL])
    assert "js/BTC_USDT-1h.json: not a freqtrade candle file" in line


def test_parquet_with_wrong_column_types_names_the_file(cli, tmp_path):
    import polars as pl

    (tmp_path / "s").mkdir()
    df = pl.read_parquet(BTC).head(100).with_columns(pl.col("date").cast(pl.String))
    df.write_parquet(tmp_path / "s" / "BTC_USDT-1h.parquet")
    line = cli(["backtest", "--data", "s", "--out", "out", *SMALL])
    assert "s/BTC_USDT-1h.parquet: columns of the wrong type (date: String" in line


# ------------------------------------------------------------------------------------------ checkpoints
def _numpy_checkpoint(path: Path) -> Path:
    import numpy as np
    import torch

    torch.save({"kind": "continuum.pretrained/1", "slow": np.zeros(3)}, path)  # a pickled numpy object
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b"this is not a checkpoint\n" * 40) or p, "not a Continuum checkpoint"),
        (lambda p: _truncated(PRETRAINED, p), "truncated or corrupt checkpoint file"),
        (lambda p: _truncated(PRETRAINED, p, keep=0.01), "truncated or corrupt checkpoint file"),
        (lambda p: p.write_bytes(b"") or p, "empty file, not a Continuum checkpoint"),
        (_numpy_checkpoint, "holds a numpy"),
    ],
    ids=["garbage", "truncated", "truncated-head", "empty", "pickled-object"],
)
def test_corrupt_pretrained_checkpoint_is_one_line_naming_it(make, needle, cli, tmp_path):
    make(tmp_path / "bad.pt")
    line = cli(["learn", "--symbols", "BTC/USDT", "--no-lake", "--pretrained", "bad.pt"])
    assert line.startswith("continuum: error: bad.pt") and needle in line, line


def test_pretrained_checkpoint_of_another_version_says_so(cli, tmp_path):
    import torch

    ck = torch.load(PRETRAINED, weights_only=True)
    ck["slow"] = {k: v for k, v in ck["slow"].items() if not k.startswith("W_in")}
    torch.save(ck, tmp_path / "old.pt")
    line = cli(["learn", "--symbols", "BTC/USDT", "--no-lake", "--pretrained", "old.pt"])
    assert "old.pt: written by another version of Continuum" in line

    torch.save({"kind": "continuum.state/1", "state": {}}, tmp_path / "state.pt")
    line = cli(["learn", "--symbols", "BTC/USDT", "--no-lake", "--pretrained", "state.pt"])
    assert "state.pt is a `continuum learn` model state checkpoint, not a `continuum pretrain` checkpoint" in line


@pytest.mark.parametrize("kind", ["truncated", "other-version"])
def test_corrupt_resume_checkpoint_is_one_line_naming_it(kind, cli, tmp_path):
    import torch

    ck = tmp_path / "ck" / "learn-learner-000000100.pt"
    if kind == "truncated":
        _truncated(PRETRAINED, ck)
        needle = "truncated or corrupt checkpoint file"
    else:
        ck.parent.mkdir()
        torch.save({"kind": "continuum.state/1", "state": {}, "rng": torch.get_rng_state(), "position": {}}, ck)
        needle = "written by another version of Continuum"
    argv = ["learn", "--symbols", "BTC/USDT", "--no-lake", "--pretrained", str(PRETRAINED), "--checkpoint-dir", "ck"]
    line = cli([*argv, "--max-bars", "1", "--idle-exit", "0.1"])
    assert "ck/learn-learner-000000100.pt" in line and needle in line, line


# ---------------------------------------------------------------------------------------- configuration
def test_bad_environment_variable_is_named(cli, monkeypatch):
    monkeypatch.setenv("CONTINUUM_BUS__KIND", "foo")
    line = cli(["evaluate", "--out", "out"])
    assert "CONTINUUM_BUS__KIND" in line and "'foo' is not one of embedded, kafka" in line
    monkeypatch.delenv("CONTINUUM_BUS__KIND")
    monkeypatch.setenv("CONTINUUM_LEARNER__THREADS", "many")
    assert "CONTINUUM_LEARNER__THREADS: learner.threads: 'many' is not an integer" in cli(["evaluate", "--out", "out"])


def test_bad_value_in_toml_file_names_the_file(cli, tmp_path):
    (tmp_path / "continuum.toml").write_text('[bus]\nkind = "foo"\n')
    line = cli(["evaluate", "--out", "out"])
    assert "continuum.toml: bus.kind: 'foo' is not one of" in line
    (tmp_path / "mine.toml").write_text("[learner]\ndevice = 7\n")
    line = cli(["--config", "mine.toml", "evaluate", "--out", "out"])
    assert "mine.toml: learner.device: expected str" in line


def test_a_secret_of_the_wrong_type_is_named_but_never_shown(cli, tmp_path, monkeypatch):
    (tmp_path / "continuum.toml").write_text("[kafka]\nsasl_password = 987654321\n")
    line = cli(["evaluate", "--out", "out"])
    assert "kafka.sasl_password" in line and "987654321" not in line, line
    (tmp_path / "continuum.toml").unlink()
    monkeypatch.setenv("CONTINUUM_KAFKA__SASL_PASSWORD", "hunter2")  # fine as a string: no error at all
    monkeypatch.setenv("CONTINUUM_KAFKA__REPLICATION_FACTOR", "s3cret-not-a-number")
    line = cli(["evaluate", "--out", "out"])
    assert "CONTINUUM_KAFKA__REPLICATION_FACTOR" in line and "hunter2" not in line


def test_bad_option_names_the_option(cli):
    line = cli(["evaluate", "--out", "out", "--device", "gpu"])
    assert "--device" in line and "'gpu' is not one of cpu, cuda, auto" in line


# ---------------------------------------------------------------------------------- --signals, --regimes
def test_truncated_signals_file_names_it(cli, tmp_path):
    _truncated(BTC, tmp_path / "sig" / "signals.parquet")
    line = cli(["backtest", "--out", "out", *SMALL, "--signals", "sig/signals.parquet"])
    assert "sig/signals.parquet: not a readable Parquet file (" in line
    shutil.copy(BTC, tmp_path / "sig" / "good.parquet")  # in a folder too, the bad file is the one named
    line = cli(["backtest", "--out", "out", *SMALL, "--signals", "sig"])
    assert "sig/signals.parquet: not a readable Parquet file (" in line


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "does not exist"), (b"\x80\x02 binary", "expected a JSON list"), (b'{"a": 1}', "expected a JSON list")],
    ids=["missing", "binary", "not-a-list"],
)
def test_bad_regimes_file_names_it(content, needle, cli, tmp_path):
    if content is not None:
        (tmp_path / "regimes.json").write_bytes(content)
    line = cli(["evaluate", "--out", "out", *SMALL, "--regimes", "regimes.json"])
    assert "regimes.json" in line and needle in line, line


# ---------------------------------------------------------------------------------- continuum signals
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["signals", "--lake", "nowhere"], "--lake nowhere: no such directory"),
        (["signals", "--lake", "."], "no signals there"),
        (["signals", "--lake", ".", "--format", "xml"], "--format 'xml': choose csv or json"),
        (["signals", "--lake", ".", "--last", "0"], "--last must be >= 1"),
    ],
    ids=["missing-lake", "empty-lake", "format", "last"],
)
def test_signals_bad_input_is_one_line(argv, needle, cli):
    assert needle in cli(argv)
