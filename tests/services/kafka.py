"""A real Apache Kafka 4 broker for the tests: jars from Maven Central, single-node KRaft on 127.0.0.1.

Why this way: Apache Kafka is not a Debian or PyPI package, and the tests must run against the real
broker (no mock cluster, no Kafka-compatible substitute). Maven Central serves ``kafka_2.13`` with
its dependencies, so ``mvn dependency:copy-dependencies`` on a four-line pom gives a runnable broker
with nothing but Java 17. The jars are cached outside the clone (``~/.cache/continuum/kafka/<version>``)
so only the first run on a machine downloads them.

The broker runs as ``process.roles=broker,controller`` (KRaft, one node), formatted with
``kafka.tools.StorageTool format --standalone``, on free ports. It has two client listeners:
PLAINTEXT and SASL_PLAINTEXT (PLAIN, user ``continuum``) so the SASL passthrough is tested for real.
:meth:`KafkaBroker.stop` / :meth:`KafkaBroker.start` keep the ports and the data, so a test can stop
the broker mid-stream and bring the same broker back.

Anything that keeps the broker from starting raises :class:`BrokerError` with the reason and the
tail of the broker's log: the tests fail, they never skip.

Run it by hand (prints cold/warm start times)::

    python -m tests.services.kafka
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"  # kafka_2.13 pulls slf4j-api 1.7, which cannot see the log4j-slf4j2 binding
SASL_USER = "continuum"
SASL_PASSWORD = "continuum-test-secret"
_ADMIN_PASSWORD = "admin-test-secret"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>continuum.tests</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


class BrokerError(RuntimeError):
    """The test broker could not be obtained or started; the message says why."""


def cache_dir() -> Path:
    """Where the jars live: outside the clone, shared by every checkout on this machine."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "continuum" / "kafka" / KAFKA_VERSION


def kafka_jars() -> Path:
    """The broker's ``lib`` directory, downloaded from Maven Central with ``mvn`` on first use."""
    lib = cache_dir() / "lib"
    if (lib / ".complete").is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn is not on PATH: install Maven (apt-get install maven) to fetch the Kafka jars")
    if shutil.which("java") is None:
        raise BrokerError("java is not on PATH: Kafka 4 needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        (Path(tmp) / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION))
        out = Path(tmp) / "lib"
        cmd = [
            mvn,
            "-B",
            "-q",
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
            f"-DoutputDirectory={out}",
            f"-Dmaven.repo.local={cache_dir().parent / 'm2'}",  # self-contained: no ~/.m2 needed or touched
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise BrokerError(f"mvn could not fetch Kafka {KAFKA_VERSION} from Maven Central:\n{tail}")
        if not any(out.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"mvn finished but no kafka_2.13 jar is in {out}")
        (out / ".complete").write_text(KAFKA_VERSION)
        if lib.exists():
            shutil.rmtree(lib)
        out.rename(lib)
    return lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaBroker:
    """One single-node KRaft broker+controller in ``workdir``; start/stop keep ports and data."""

    def __init__(self, workdir: str | Path, heap: str = "768m"):
        self.workdir = Path(workdir)
        self.heap = heap
        self.port, self.sasl_port, self.controller_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.lib: Path | None = None
        self.start_seconds: float | None = None  # of the last start, download included when there was one
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    def _java(self, *args: str) -> list[str]:
        assert self.lib is not None
        return [
            "java",
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{self.lib}/*",
            *args,
        ]

    def _write_config(self) -> Path:
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{_ADMIN_PASSWORD}" '
            f'user_admin="{_ADMIN_PASSWORD}" user_{SASL_USER}="{SASL_PASSWORD}";'
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return path

    def _format(self, props: Path) -> None:
        uuid = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, timeout=120
        )
        if uuid.returncode != 0 or not uuid.stdout.strip():
            raise BrokerError(f"StorageTool random-uuid failed: {(uuid.stdout + uuid.stderr)[-2000:]}")
        cluster_id = uuid.stdout.strip()
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"StorageTool format failed: {(fmt.stdout + fmt.stderr)[-2000:]}")
        self._formatted = True

    def start(self, timeout_s: float = 120.0) -> float:
        """Start (first time: fetch jars, format storage); return seconds until the broker answered."""
        if self.proc is not None and self.proc.poll() is None:
            return 0.0
        t0 = time.monotonic()
        self.lib = kafka_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not self._formatted:
            self._format(props)
        out = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self._wait_ready(t0 + timeout_s)
        self.start_seconds = time.monotonic() - t0
        return self.start_seconds

    def _wait_ready(self, deadline: float) -> None:
        """Ready = a client gets metadata back and the broker lists itself (not just an open port)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(f"broker exited with code {self.proc.returncode}:\n{self.log_tail()}")
            # the port first: kafka-python's client backs off for seconds on refused connections
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    time.sleep(0.1)
                    continue
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
                try:
                    cluster = admin.describe_cluster()
                    if cluster.get("brokers"):
                        return
                finally:
                    admin.close()
            except (KafkaError, OSError) as e:
                last = repr(e)
            time.sleep(0.2)
        self.stop(kill=True)
        raise BrokerError(f"broker did not answer on {self.bootstrap} in time ({last}):\n{self.log_tail()}")

    def stop(self, kill: bool = False, timeout_s: float = 30.0) -> None:
        """SIGTERM (controlled shutdown) or SIGKILL; the data directory and ports stay for a restart."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        text = ""
        for f in (self.workdir / "stdout.log", self.log_file):
            if f.is_file():
                text += f"--- {f.name}\n" + f.read_text(errors="replace")[-n:]
        return text or "(no broker log)"


def main() -> None:
    """Time a cold start (download when the cache is empty) and a warm start, then stop."""
    cold = not (cache_dir() / "lib" / ".complete").is_file()
    with tempfile.TemporaryDirectory() as tmp:
        b = KafkaBroker(tmp)
        try:
            t1 = b.start()
            print(f"first start ({'with download' if cold else 'jars cached'}): {t1:.1f}s on {b.bootstrap}")
            b.stop()
            t2 = b.start()
            print(f"restart (same data, warm): {t2:.1f}s")
        finally:
            b.stop()
    with tempfile.TemporaryDirectory() as tmp:
        b = KafkaBroker(tmp)
        try:
            t3 = b.start()
            print(f"fresh start (jars cached, format + start): {t3:.1f}s")
        finally:
            b.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
