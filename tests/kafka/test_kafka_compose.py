"""compose.yaml stays consistent with the code: config keys, commands, image versions (no Docker needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from commands.cli import COMMANDS, build_parser
from continuum.config import load_config
from tests.services.kafka import KAFKA_VERSION

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = ("market-ingest", "chain-ingest", "learner", "alerts", "scheduler", "dashboard")


def _compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def _resolve(value: object) -> str:
    """Compose's ``${VAR:-default}`` interpolation, with the default (the value a fresh machine sees)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _resolve(v) for k, v in env.items()}


def test_every_continuum_variable_is_a_real_config_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./continuum.toml
    services = _compose()["services"]
    for name in APP_SERVICES:
        env = _env(services[name])
        ours = {k: v for k, v in env.items() if k.startswith("CONTINUUM_")}
        assert all("__" in k for k in ours), f"{name}: {sorted(ours)} (CONTINUUM_<SECTION>__<KEY>)"
        cfg = load_config(env=ours)  # raises ConfigError on an unknown key or a bad value
        assert cfg.bus.kind == "kafka"
        assert cfg.kafka.bootstrap_servers == "kafka:9092"


def test_services_run_real_commands_and_the_broker_matches_the_tested_one() -> None:
    doc = _compose()
    services = doc["services"]
    for name in APP_SERVICES:
        cmd = [_resolve(c) for c in services[name]["command"]]
        assert cmd[0] == "continuum" and cmd[1] in COMMANDS, f"{name}: {cmd}"
        if isinstance(COMMANDS[cmd[1]], dict):
            assert cmd[2] in COMMANDS[cmd[1]], f"{name}: {cmd}"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        args = build_parser().parse_args(cmd[1:])  # every option is a real one (argparse exits 2 otherwise)
        assert (args.metrics_port, args.metrics_address) == (9464, "0.0.0.0"), f"{name}: metrics not served"
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--rpc" in services["chain-ingest"]["command"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "pip install ." in dockerfile
