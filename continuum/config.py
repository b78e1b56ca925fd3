"""One validated configuration: a TOML file, then ``CONTINUUM_<SECTION>__<KEY>`` environment variables.

Precedence: defaults < TOML file (``--config`` or ``$CONTINUUM_CONFIG`` or ``./continuum.toml``)
< environment. Every key is typed; an unknown section or key, or a value of the wrong type or out of
range, is a :class:`ConfigError` that the command line prints as one line and exits with code 2.

Example ``continuum.toml``::

    [bus]
    kind = "kafka"
    [kafka]
    bootstrap_servers = "broker-1:9092,broker-2:9092"
    security_protocol = "SASL_SSL"
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_username = "continuum"
    # the password comes from CONTINUUM_KAFKA__SASL_PASSWORD, never from the file

Secrets (``*password*``, ``*secret*``, ``api_key``, ``*token*``, ``*webhook*``) are redacted by
:meth:`Config.redacted` (a webhook URL keeps its scheme and host: ``https://hooks.slack.com/services/***/***/***``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from continuum.errors import UserError
from continuum.timeframes import timeframe_ms

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATA = REPO_ROOT / "data" / "binance"


class ConfigError(UserError):
    """A bad configuration value or key. ``key`` ("section.key") lets the loader name where it was set."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class BusConfig:
    kind: str = "embedded"  # embedded | kafka
    partitions: int = 8  # partitions per topic

    def check(self) -> None:
        _choice("bus.kind", self.kind, ("embedded", "kafka"))
        _range("bus.partitions", self.partitions, 1, 10_000)


@dataclass
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "continuum"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = ""  # from the environment
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    replication_factor: int = 1
    linger_ms: int = 20
    batch_size: int = 262_144
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000

    def check(self) -> None:
        _choice(
            "kafka.security_protocol",
            self.security_protocol,
            ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        )
        if self.sasl_mechanism:
            _choice("kafka.sasl_mechanism", self.sasl_mechanism, ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
        if not self.bootstrap_servers.strip():
            raise ConfigError("kafka.bootstrap_servers: must name at least one host:port", "kafka.bootstrap_servers")
        for hp in self.bootstrap_servers.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"kafka.bootstrap_servers: {hp!r} is not host:port", "kafka.bootstrap_servers")
        _range("kafka.replication_factor", self.replication_factor, 1, 10)
        _range("kafka.linger_ms", self.linger_ms, 0, 60_000)


@dataclass
class LakeConfig:
    root: str = ".continuum/lake"

    def check(self) -> None:
        if not self.root:
            raise ConfigError("lake.root: must not be empty", "lake.root")


@dataclass
class LearnerConfig:
    device: str = "cpu"  # cpu | cuda | auto
    threads: int = 1  # torch threads; 1 is fastest on small shared machines
    checkpoint_dir: str = ".continuum/checkpoints"
    checkpoint_every: int = 24  # bars between checkpoints in the service
    keep_checkpoints: int = 5
    pretrained: str = ""  # path of a `continuum pretrain` checkpoint

    def check(self) -> None:
        _choice("learner.device", self.device, ("cpu", "cuda", "auto"))
        _range("learner.threads", self.threads, 1, 256)
        _range("learner.checkpoint_every", self.checkpoint_every, 1, 1_000_000)
        _range("learner.keep_checkpoints", self.keep_checkpoints, 1, 1000)


@dataclass
class ExchangeConfig:
    name: str = "binance"
    timeframe: str = "1h"
    symbols: str = "BTC/USDT,ETH/USDT"
    rate_limit: bool = True

    def check(self) -> None:
        try:
            timeframe_ms(self.timeframe, "exchange.timeframe:")
        except UserError as e:
            raise ConfigError(str(e), "exchange.timeframe") from None


@dataclass
class ChainConfig:
    rpc: str = "http://127.0.0.1:8545"
    chain: str = "ethereum"
    confirmations: int = 12

    def check(self) -> None:
        _range("chain.confirmations", self.confirmations, 0, 10_000)


@dataclass
class AlertsConfig:
    """``continuum alerts --follow`` and the in-process :class:`alerts.engine.Alerter` (docs/alerts.md)."""

    # where alerts are posted: comma-separated URLs, each optionally FORMAT=URL (slack | discord | json);
    # without a format, hooks.slack.com means slack, discord.com means discord, anything else plain JSON.
    # The URLs are secrets: set them from the environment (CONTINUUM_ALERTS__WEBHOOKS), never print them.
    webhooks: str = ""
    # rules that run: signal rules (signal, regime_switch, vol_spike) and transfer rules (forensics.rules)
    rules: str = "signal,regime_switch,vol_spike,sanctioned,exploit,mixer_deposit,mixer_withdrawal,phishing,large,watch"
    confidence: float = 0.68  # signal: fires when a signal's confidence reaches this (0: off; 0.68 ~ |z| 1)
    zscore: float = 0.0  # signal: ... or when |ret_24h| / vol_24h reaches this (0: off)
    vol_spike: float = 2.0  # vol_spike: vol_24h at or over this multiple of its trailing median
    vol_window: int = 168  # vol_spike: bars in that trailing median (168 = a week of 1h bars)
    regime_hold: int = 6  # regime_switch: bars a new regime word must hold before it counts (1: at once)
    large: str = ""  # large: thresholds on top of forensics' defaults, "SYMBOL=AMOUNT,..." (e.g. "WETH=50")
    watch: str = ""  # watch: comma-separated addresses whose every transfer alerts
    tries: int = 5  # POSTs per alert and webhook before giving up (connection errors, 5xx, 408, 429)
    backoff_s: float = 1.0  # first retry within this many seconds; doubles per try (full jitter)
    backoff_max_s: float = 60.0  # cap of one retry's wait (a Retry-After header is honoured up to 600 s)
    timeout_s: float = 10.0  # one POST's connect + read timeout
    queue_size: int = 1000  # alerts waiting per webhook; beyond it they wait in the outbox for a later pass
    redeliver_s: float = 300.0  # how often an idle sender retries what it gave up on (and what overflowed)
    max_age_h: float = 24.0  # alerts older than this are no longer posted (after an outage or a restart)
    state_dir: str = ".continuum/alerts"  # the rule state, the delivery journal and a lock
    poll_s: float = 5.0  # --follow on the embedded bus: how often the lake is read for new rows

    def check(self) -> None:
        if self.vol_spike != 0 and self.vol_spike <= 1:
            raise ConfigError(
                f"alerts.vol_spike: {self.vol_spike} must be > 1 (a multiple of the median) or 0 (off)",
                "alerts.vol_spike",
            )
        for name, lo, hi in (("confidence", 0.0, 1.0), ("zscore", 0.0, 100.0)):
            _frange(f"alerts.{name}", getattr(self, name), lo, hi)
        _range("alerts.vol_window", self.vol_window, 2, 100_000)
        _range("alerts.regime_hold", self.regime_hold, 1, 100_000)
        _range("alerts.tries", self.tries, 1, 100)
        _range("alerts.queue_size", self.queue_size, 1, 1_000_000)
        for name in ("backoff_s", "backoff_max_s", "timeout_s", "redeliver_s", "max_age_h", "poll_s"):
            _frange(f"alerts.{name}", getattr(self, name), 0.0, 1e7, open_low=True)
        if not self.state_dir:
            raise ConfigError("alerts.state_dir: must not be empty", "alerts.state_dir")


@dataclass
class Config:
    bus: BusConfig = field(default_factory=BusConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    # "section.key" -> where the value was set (file, variable, option), for error messages
    _origin: ClassVar[dict[str, str]] = {}

    def check(self) -> Config:
        for f in dataclasses.fields(self):
            getattr(self, f.name).check()
        return self

    def redacted(self) -> dict[str, dict[str, Any]]:
        out = {}
        for f in dataclasses.fields(self):
            sec = dataclasses.asdict(getattr(self, f.name))
            out[f.name] = {k: _redacted(k, v) for k, v in sec.items()}
        return out


def _secret(key: str) -> bool:
    return any(s in key for s in ("password", "secret", "api_key", "token", "webhook"))


def _redacted(key: str, value: Any) -> Any:
    """A secret's value as shown: URLs (webhooks) keep scheme and host, anything else is ``***``."""
    if not _secret(key) or not value:
        return value
    if isinstance(value, str) and "://" in value:
        import re

        from continuum.redact import mask_webhook

        return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,]+", lambda m: mask_webhook(m.group(0)), value)
    return "***"


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}", name)


def _range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {value} is outside {lo}..{hi}", name)


def _frange(name: str, value: float, lo: float, hi: float, open_low: bool = False) -> None:
    if not (lo < value <= hi if open_low else lo <= value <= hi):
        raise ConfigError(f"{name}: {value} is outside {'(' if open_low else '['}{lo:g}, {hi:g}]", name)


def _coerce(name: str, raw: Any, typ: type, from_env: bool) -> Any:
    """TOML values must already have the right type; environment strings are parsed strictly.
    A secret's value never appears in the message."""
    shown = "***" if _secret(name) else repr(raw)
    if from_env:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: {shown} is not a boolean (true/false)")
        if typ is int:
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{name}: {shown} is not an integer") from None
        if typ is float:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}: {shown} is not a number") from None
            if not math.isfinite(value):
                raise ConfigError(f"{name}: {shown} is not a finite number")
            return value
        return raw
    if typ is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)  # TOML's 2 where 2.0 is meant
    ok = isinstance(raw, typ) and not (typ is int and isinstance(raw, bool))
    if not ok:
        raise ConfigError(f"{name}: expected {typ.__name__}, got {type(raw).__name__} {shown}")
    return raw


def _apply(cfg: Config, section: str, key: str, raw: Any, from_env: bool, where: str) -> str:
    """Set ``section.key`` from ``raw`` (typed strictly); returns "section.key". ``where`` names the source."""
    sections = {f.name: f for f in dataclasses.fields(cfg)}
    if section not in sections:
        raise ConfigError(f"{where}: unknown section [{section}]; known: {', '.join(sections)}")
    sec = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(sec)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown key {section}.{key}; known: {', '.join(fields)}")
    typ = {"str": str, "int": int, "bool": bool, "float": float}[fields[key].type]
    try:
        setattr(sec, key, _coerce(f"{section}.{key}", raw, typ, from_env))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return f"{section}.{key}"


def _checked(cfg: Config, origin: dict[str, str]) -> Config:
    """Validate; an invalid value is reported with where the user set it (file, variable or option)."""
    try:
        return cfg.check()
    except ConfigError as e:
        where = origin.get(e.key or "")
        if where:
            raise ConfigError(f"{where}: {e}", e.key) from None
        raise


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file, then the environment; validated. Raises ConfigError."""
    env = dict(os.environ if env is None else env)
    cfg = Config()
    origin: dict[str, str] = {}  # "section.key" -> where its value came from
    explicit = path or env.get("CONTINUUM_CONFIG")
    p = Path(explicit) if explicit else Path("continuum.toml")
    if explicit and not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    if p.is_file():
        try:
            doc = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        for section, body in doc.items():
            if not isinstance(body, dict):
                raise ConfigError(f"{p}: top-level key {section!r} must be a [section]")
            for key, raw in body.items():
                origin[_apply(cfg, section, key, raw, False, str(p))] = str(p)
    for name, raw in sorted(env.items()):
        if not name.startswith("CONTINUUM_") or name == "CONTINUUM_CONFIG":
            continue
        rest = name[len("CONTINUUM_") :].lower()
        if "__" not in rest:
            continue  # other CONTINUUM_ variables (e.g. CONTINUUM_VENV) are not config keys
        section, key = rest.split("__", 1)
        origin[_apply(cfg, section, key, raw, True, name)] = name
    cfg._origin = origin
    return _checked(cfg, origin)


def with_options(cfg: Config, overrides: list[tuple[str, str, Any]]) -> Config:
    """Command-line options on top of the loaded config: ``[(flag, "section.key", value)]``; ``None`` = unset.

    The one place options and config meet, so a command reads every setting from ``cfg`` alone. A bad
    value is reported with the option's name.
    """
    origin = dict(getattr(cfg, "_origin", {}))
    for flag, dotted, value in overrides:
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        origin[_apply(cfg, section, key, value, False, flag)] = flag
    cfg._origin = origin
    return _checked(cfg, origin)
