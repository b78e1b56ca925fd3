"""The SparkSession behind ``--engine spark``: small and quick on one machine, the cluster's own settings on a cluster.

Where the master comes from, first found wins:

1. ``master`` (the command line's ``--spark-master``: ``spark://host:7077``, ``yarn``, ``k8s://…``, ``local[4]``);
2. the ``SPARK_MASTER`` environment variable;
3. ``spark-submit``: a script it starts runs inside the JVM it launched (``PYSPARK_GATEWAY_PORT`` is set), so its
   ``--master`` and ``--conf`` settings stand and nothing here overrides them;
4. else ``local[2]`` with the small-machine settings of :data:`LOCAL_CONF`.

Only the local default is tuned down (2 cores, 4 shuffle partitions, no web UI): a forensics query on one machine
then starts in seconds, where Spark's 200 shuffle partitions would spend most of each hop on scheduling. On a
cluster Spark's and the cluster's defaults, with adaptive query execution, size the shuffles.

pyspark is an optional dependency (``pip install 'continuum[spark]'``) and is imported here only when a session is
asked for, so ``continuum --help`` and the polars engine never load it.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from continuum.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MISSING = "--engine spark needs pyspark: pip install 'continuum[spark]'"
APP_NAME = "continuum-forensics"
LOCAL_MASTER = "local[2]"
# Only for the local default (see the module docstring); a cluster keeps its own settings.
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",  # one small lake, two cores: 200 partitions would be 200 tiny tasks a hop
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",  # no web server (and no port clash) for a command-line query or a test
    "spark.ui.showConsoleProgress": "false",  # progress bars would interleave with the command's table
}
# Everywhere: times are epoch milliseconds in UTC, as in the lake; the answers never depend on the host's zone.
ALWAYS_CONF = {"spark.sql.session.timeZone": "UTC"}


def require_pyspark() -> None:
    """Raise the one-line :class:`UserError` (exit code 2) when pyspark is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError as e:
        raise UserError(MISSING) from e


def resolve_master(master: str | None = None) -> str | None:
    """The master to set on the builder, or ``None`` when spark-submit already chose one."""
    if master:
        return master
    if os.environ.get("SPARK_MASTER"):
        return os.environ["SPARK_MASTER"]
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # started by spark-submit: its --master stands
        return None
    return LOCAL_MASTER


def session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """The active SparkSession, or a new one on the master :func:`resolve_master` picks, with ``conf`` on top
    (the tests' short-lived JVM, a bench's settings)."""
    require_pyspark()
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    chosen = resolve_master(master)
    builder = SparkSession.builder.appName(APP_NAME)
    if chosen is not None:
        builder = builder.master(chosen)
    settings = {**(LOCAL_CONF if chosen == LOCAL_MASTER else {}), **ALWAYS_CONF}
    if chosen == LOCAL_MASTER:  # local mode runs in the driver: its heap is all there is (Spark's own variable)
        settings["spark.driver.memory"] = os.environ.get("SPARK_DRIVER_MEMORY", "2g")
    for k, v in {**settings, **(conf or {})}.items():
        builder = builder.config(k, v)
    # results come back through Arrow, never pandas; pyspark's warning about pandas 3 does not concern them
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as e:  # no Java, or a master that does not answer
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--engine spark could not start Spark (needs Java 17+ and a reachable master): {first}") from e
    spark.sparkContext.setLogLevel("ERROR")
    return spark
