"""The engines a dataset is processed with: DuckDB/polars in this process, or Apache Spark.

:func:`open_engine` picks one by name; both have the same methods (:class:`Engine`), so a
caller never branches on the engine:

>>> engine = open_engine("duckdb")
>>> engine.name
'duckdb'
>>> open_engine("flink")
Traceback (most recent call last):
...
rmapscope.errors.UsageError: unknown engine 'flink'; known: duckdb, spark
>>> open_engine("duckdb", master="local[2]")
Traceback (most recent call last):
...
rmapscope.errors.UsageError: `master` and `conf` only apply with `engine` spark
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rmapscope import spark as spark_engine
from rmapscope.dataset import Dataset
from rmapscope.errors import RmapscopeError, UsageError

if TYPE_CHECKING:
    import polars as pl
    from pyspark.sql import SparkSession

    from rmapscope.analysis.session import SqlSession
    from rmapscope.ingest import IngestResult

#: ``progress_for(path)``: a context manager around the ingest of ``path`` and the callback
#: ``progress(bytes_done, bytes_total, events)`` it takes (None: no progress).
ProgressFor = Callable[
    [str], tuple[AbstractContextManager[object], Callable[[int, int | None, int], None] | None]
]


@dataclass
class ReplayFailure:
    """A trace whose replay failed (its earlier replay, if any, stays)."""

    trace_id: str
    host: str
    error: str


@dataclass
class ReplayRun:
    """What a replay did: the replay tables per trace id, and the traces that failed."""

    tables: dict[str, dict[str, pl.DataFrame]]
    failures: list[ReplayFailure] = field(default_factory=list)


class Engine(Protocol):
    """What every engine does to a dataset."""

    name: str

    def ingest(
        self,
        files: list[str],
        dataset: Dataset,
        *,
        host: str | None = None,
        fmt: str | None = None,
        arch: str | None = None,
        force: bool = False,
        progress_for: ProgressFor | None = None,
    ) -> Iterator[IngestResult | RmapscopeError]:
        """Ingest ``files``: per file, in order, its result or the error it failed with."""
        ...

    def replay(
        self,
        dataset: Dataset,
        trace_ids: list[str] | None,
        progress: Callable[[str], None] | None = None,
    ) -> ReplayRun:
        """Replay the traces (all when None) and publish their replay tables."""
        ...

    def sql(self, dataset: Dataset) -> SqlSession:
        """A SQL session with the dataset's views."""
        ...


class LocalEngine:
    """DuckDB and polars in this process (the default)."""

    name = "duckdb"

    def ingest(
        self,
        files: list[str],
        dataset: Dataset,
        *,
        host: str | None = None,
        fmt: str | None = None,
        arch: str | None = None,
        force: bool = False,
        progress_for: ProgressFor | None = None,
    ) -> Iterator[IngestResult | RmapscopeError]:
        """Ingest the files one after the other; a file that fails does not stop the rest."""
        from rmapscope.ingest import ingest

        for path in files:
            around, progress = progress_for(path) if progress_for else (nullcontext(), None)
            try:
                with around:
                    result = ingest(
                        path, dataset, host=host, fmt=fmt, arch=arch, force=force, progress=progress
                    )
            except RmapscopeError as e:
                yield e
            else:
                yield result

    def replay(
        self,
        dataset: Dataset,
        trace_ids: list[str] | None,
        progress: Callable[[str], None] | None = None,
    ) -> ReplayRun:
        """Replay each trace here (``progress`` is for cluster jobs: unused here)."""
        from rmapscope.replay import replay

        return ReplayRun(replay(dataset, trace_ids))

    def sql(self, dataset: Dataset) -> SqlSession:
        """A DuckDB session."""
        from rmapscope.analysis.session import DuckDBSession

        return DuckDBSession(dataset)


class SparkEngine:
    """Apache Spark: files ingested and traces replayed by executors, SQL on Spark SQL."""

    name = "spark"

    def __init__(self, session: SparkSession) -> None:
        self.session = session

    def ingest(
        self,
        files: list[str],
        dataset: Dataset,
        *,
        host: str | None = None,
        fmt: str | None = None,
        arch: str | None = None,
        force: bool = False,
        progress_for: ProgressFor | None = None,
    ) -> Iterator[IngestResult | RmapscopeError]:
        """Ingest every file (globs expanded) in parallel, published in one commit."""
        from rmapscope.ingest.spark import FailedIngest, ingest_spark

        done = ingest_spark(
            files, dataset, self.session, host=host, fmt=fmt, arch=arch, force=force
        )
        for r in done:
            if isinstance(r, FailedIngest):
                yield RmapscopeError(r.error, exit_code=r.exit_code)
            else:
                yield r

    def replay(
        self,
        dataset: Dataset,
        trace_ids: list[str] | None,
        progress: Callable[[str], None] | None = None,
    ) -> ReplayRun:
        """One Spark task per trace; every trace that succeeded is published in one commit."""
        from rmapscope.replay.spark import replay_spark
        from rmapscope.replay.store import read_replay

        run = ReplayRun({})
        for r in replay_spark(dataset, self.session, trace_ids, progress=progress):
            if r.error is not None:
                run.failures.append(ReplayFailure(r.trace_id, r.host, r.error))
            else:
                run.tables[r.trace_id] = read_replay(dataset, r.trace_id, skip=("page_states",))
        return run

    def sql(self, dataset: Dataset) -> SqlSession:
        """A Spark SQL session."""
        from rmapscope.analysis.session import SparkSqlSession

        return SparkSqlSession(self.session, dataset)


#: Engines that run on a cluster and take its settings (``master``, ``conf``).
CLUSTER_ENGINES = ("spark",)


def open_engine(
    name: str = "duckdb",
    master: str | None = None,
    conf: Mapping[str, str] | Sequence[str] | None = None,
    verbose: bool = False,
) -> Engine:
    """The engine called ``name`` (one of :data:`rmapscope.spark.ENGINES`), started.

    ``master`` and ``conf`` are the Spark master URL and settings (a dict, or ``KEY=VALUE``
    strings; only for Spark); ``verbose`` lets Spark log its warnings.
    """
    spark_engine.check_engine(name)
    if name not in CLUSTER_ENGINES:
        if master or conf:
            raise UsageError(
                f"`master` and `conf` only apply with `engine` {' or '.join(CLUSTER_ENGINES)}",
                params=("master", "conf", "engine"),
            )
        return LocalEngine()
    settings = dict(conf) if isinstance(conf, Mapping) else spark_engine.parse_conf(conf)
    return SparkEngine(spark_engine.session(master, settings, verbose=verbose))
