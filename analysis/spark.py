"""The dataset's views in Spark SQL: the same names and columns as :func:`connect` in DuckDB.

Each table is a temporary view over its Parquet files (Hive partitions ``host`` and
``trace`` as strings, schemas merged across traces), plus ``events`` with the common columns
of every event table. Spark has no unsigned integers: ``UInt64`` columns (pfn, addr, ...)
read as ``DECIMAL(20,0)`` and smaller unsigned ones as the next wider signed type, with the
same values.

The example needs a Spark session (pyspark and a Java runtime), so it is not run as a doctest:

>>> from rmapscope.analysis.spark import register_views  # doctest: +SKIP
>>> register_views(spark, Dataset("rmapscope-data"))  # doctest: +SKIP
>>> spark.sql("SELECT event, count(*) FROM events GROUP BY 1").show()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import pyarrow as pa

from rmapscope.catalog import COMMON_NAMES, GENERIC_DIR
from rmapscope.dataset import Dataset
from rmapscope.errors import MissingTablesError, UsageError

from . import table_names
from .queries import CANNED, QUERIES, bind_params

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def register_views(spark: SparkSession, dataset: Dataset) -> list[str]:
    """Create a temporary view per table of ``dataset`` and ``events``; returns the names."""
    dataset.require()
    names = []
    events = []
    for name, path in table_names(dataset).items():
        # from the dataset's root, `event=` is a partition column as in DuckDB's views
        # (a probe table's rows say `event` = the probe's own name, the partition its table)
        base = dataset.root if path.name.startswith("event=") else path
        reader = spark.read.option("mergeSchema", "true").option("basePath", str(base))
        df = reader.parquet(str(path))
        df.createOrReplaceTempView(_quote(name))
        names.append(name)
        if path.name.startswith("event=") or name == GENERIC_DIR:
            events.append(df.select(*COMMON_NAMES, "host", "trace"))
    if events:
        union = functools.reduce(lambda a, b: a.unionByName(b), events)
    else:
        cols = ", ".join(f"CAST(NULL AS STRING) AS {c}" for c in [*COMMON_NAMES, "host", "trace"])
        union = spark.sql(f"SELECT {cols} WHERE false")
    union.createOrReplaceTempView("events")
    return [*names, "events"]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sql(spark: SparkSession, query: str, params: dict[str, object] | None = None) -> pa.Table:
    """Run ``query`` (named parameters as ``:name``) and return its rows as Arrow."""
    return spark.sql(query, args=params or None).toArrow()


def run_canned(spark: SparkSession, name: str, params: dict[str, str] | None = None) -> pa.Table:
    """Run a canned query on Spark (views registered), with the same parameters as DuckDB."""
    q = CANNED.get(name)
    if q is None and name in QUERIES:
        raise UsageError(f"query {name} is one of the report's, in DuckDB's SQL: run it on DuckDB")
    if q is None:
        raise UsageError(f"no canned query {name!r}; see `rmapscope query list`")
    values = bind_params(q, params)
    existing = {r.viewName for r in spark.sql("SHOW VIEWS").collect()}
    missing = [t for t in q.needs if t not in existing]
    if missing:
        raise MissingTablesError(f"query {name}", missing)
    return sql(spark, spark_dialect(q.sql), values)


def spark_dialect(text: str) -> str:
    """A canned query's text for Spark: DuckDB's ``$name`` parameters become ``:name``.

    >>> spark_dialect("SELECT * FROM t WHERE ($trace IS NULL OR trace = $trace)")
    'SELECT * FROM t WHERE (:trace IS NULL OR trace = :trace)'
    """
    return re.sub(r"\$(\w+)", r":\1", text)
