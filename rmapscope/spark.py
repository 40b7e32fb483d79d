"""Apache Spark as a second engine: the session every ``--engine spark`` command starts.

Spark is an optional extra (``pip install 'rmapscope[spark]'``) and needs Java 17 or newer.
The dataset is read in place (Hive partitions ``host=`` and ``trace=`` as string columns),
so the executors must see the dataset directory at the same path as the driver: in local
mode that is a given; on a cluster, put the dataset on a shared filesystem (NFS, Lustre,
a FUSE mount of the object store) and install rmapscope on every executor.

>>> from rmapscope.spark import ENGINES
>>> ENGINES
('duckdb', 'spark')
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

from rmapscope import config
from rmapscope.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Values of ``--engine``: the local default and Spark.
ENGINES = ("duckdb", "spark")

INSTALL_HINT = (
    "the Spark engine needs pyspark 4 and Java 17 or newer: pip install 'rmapscope[spark]' "
    "(and e.g. apt install openjdk-17-jre-headless)"
)

#: Settings rmapscope needs whatever the master: partition values stay strings (a trace id
#: of digits only must not become a number) and timestamps are UTC, as in DuckDB.
REQUIRED_CONF = {
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else a :class:`UsageError`."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    return engine


def parse_conf(pairs: Sequence[str] | None) -> dict[str, str]:
    """Spark settings given as ``KEY=VALUE`` strings (``conf``), as a dict.

    >>> parse_conf(["spark.executor.memory=4g"])
    {'spark.executor.memory': '4g'}
    """
    conf = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"`conf` takes KEY=VALUE, not {p!r}", params=("conf",))
        conf[k.strip()] = v
    return conf


def session(
    master: str | None = None, conf: dict[str, str] | None = None, verbose: bool = False
) -> SparkSession:
    """A Spark session for rmapscope (the active one, configured, when there is one).

    Without ``master`` (and without one from ``spark-submit``), Spark runs in local mode on
    every core. In local mode the Python workers are this interpreter, so they import the
    same rmapscope. Raises :class:`UsageError` when pyspark or Java is missing.
    """
    try:
        from pyspark import SparkConf
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    if not (config.java_home() or shutil.which("java")):
        raise UsageError(f"Spark needs Java (no `java` on PATH, JAVA_HOME unset); {INSTALL_HINT}")
    builder = SparkSession.builder.appName("rmapscope")
    given = SparkConf()  # what spark-submit or spark-defaults.conf set
    if master:
        builder = builder.master(master)
    elif not given.contains("spark.master"):
        builder = builder.master("local[*]")
    local = (master or given.get("spark.master", "local[*]")).startswith("local")
    settings = dict(REQUIRED_CONF)
    if local and not config.pyspark_python():
        settings["spark.pyspark.python"] = sys.executable
    if local and not given.contains("spark.driver.extraJavaOptions"):
        # the JVM starts here: quiet its start-up logging (our errors are one line each)
        logging = resources.files("rmapscope.data") / "spark-log4j2.properties"
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{logging}"
    settings["spark.ui.showConsoleProgress"] = str(sys.stderr.isatty()).lower()
    settings.update(conf or {})
    for k, v in settings.items():
        builder = builder.config(k, v)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # the JVM did not start: Java too old, bad master URL...
        raise UsageError(f"could not start Spark: {' '.join(str(e).split())[:300]}") from None
    for k, v in REQUIRED_CONF.items():  # an active session ignores builder settings
        spark.conf.set(k, v)
    spark.sparkContext.setLogLevel("WARN" if verbose else "FATAL")
    return spark
