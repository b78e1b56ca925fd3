"""Configuration: TOML + environment, validated; every bad input is one clear line and exit code 2."""

from __future__ import annotations

import pytest

from commands.cli import main
from continuum.config import ConfigError, load_config


def test_defaults_file_and_env(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[bus]\nkind = "kafka"\npartitions = 4\n[kafka]\nbootstrap_servers = "k1:9092,k2:9092"\n')
    cfg = load_config(f, env={"CONTINUUM_BUS__PARTITIONS": "12", "CONTINUUM_KAFKA__SASL_PASSWORD": "s3cret"})
    assert cfg.bus.kind == "kafka" and cfg.bus.partitions == 12  # environment wins over the file
    assert cfg.kafka.sasl_password == "s3cret"
    assert cfg.redacted()["kafka"]["sasl_password"] == "***"


@pytest.mark.parametrize(
    ("toml", "env", "msg"),
    [
        ("[bus]\nkind = 'carrier-pigeon'\n", {}, "bus.kind"),
        ("[bus]\nflavour = 1\n", {}, "unknown key bus.flavour"),
        ("[nope]\nx = 1\n", {}, "unknown section"),
        ("[bus]\npartitions = '8'\n", {}, "expected int"),
        ("", {"CONTINUUM_BUS__PARTITIONS": "many"}, "not an integer"),
        ("", {"CONTINUUM_LEARNER__DEVICE": "tpu"}, "learner.device"),
        ("[kafka]\nbootstrap_servers = 'nohost'\n", {}, "host:port"),
        ("not = [toml", {}, "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, toml, env, msg):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=msg):
        load_config(f, env=env)


def test_cli_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text("[bus]\nflavour = 1\n")
    assert main(["--config", str(f), "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key bus.flavour" in err[0]
