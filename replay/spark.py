"""Replay on Apache Spark: the same :func:`~rmapscope.replay.replay_trace` per (host, trace).

The driver has Spark read the Parquet files of every table replay needs as they are, as
bytes (Spark's ``binaryFile`` source, with ``host``/``trace`` from the Hive partitions,
pruned to the traces asked for), and group them by (host, trace); ``applyInArrow`` hands each
group to :func:`_replay_group` on an executor, which decodes the files exactly as the local
engine reads them (the same polars reader, files in path order), replays them and writes the
replay tables into a staging directory of the dataset. Only compressed Parquet moves, and no
value goes through Spark's row format, so types (unsigned integers above all, which Spark
lacks) stay the dataset's own. The driver then publishes every trace that succeeded in one
atomic commit; a trace whose replay failed is reported and the others still land.

A trace is one group: executors need the memory the local engine needs for the largest
trace (the local engine's batch-aligned partitioning of huge traces is not used here), and
one Parquet file of a table may be at most 2 GB (Spark's limit for a binary value).
"""

from __future__ import annotations

import functools
import io
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from rmapscope.catalog import EVENT_PREFIX, GENERIC_DIR, PROBE_TABLES, REPLAY_TABLES, table_of
from rmapscope.dataset import Dataset, StagedTrace

from .engine import INPUT_EVENTS, PARENT_EVENTS, parent_events, replay_trace
from .store import select_traces, write_tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Side tables a replay reads besides the events.
_SIDE = ("gaps", "traces")

RESULT_SCHEMA = "host string, trace string, error string, seconds double, events long, rows string"
_RESULT_ARROW = pa.schema(
    [
        ("host", pa.string()),
        ("trace", pa.string()),
        ("error", pa.string()),
        ("seconds", pa.float64()),
        ("events", pa.int64()),
        ("rows", pa.string()),
    ]
)


@dataclass
class TraceReplay:
    """What the Spark replay of one trace did (``error`` set when it failed)."""

    host: str
    trace_id: str
    seconds: float
    events: int
    rows: dict[str, int]
    error: str | None = None


def replay_spark(
    ds: Dataset,
    spark: SparkSession,
    trace_ids: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TraceReplay]:
    """Replay the given traces (all when None) on Spark and publish their replay tables.

    Returns one :class:`TraceReplay` per trace, in manifest order; the traces with an
    ``error`` were not published (an earlier replay of them stays as it was).
    """
    known = select_traces(ds, trace_ids)
    staging = ds.new_staging()
    try:
        files = _trace_files(spark, ds, list(known))
        staged = str(staging.path.resolve())

        def job(files: pa.Table) -> pa.Table:  # type hints tell Spark it takes a whole group
            return _replay_group(files, staging=staged)

        if progress:
            progress(f"replaying {len(known)} traces on {spark.sparkContext.master}")
        rows = files.groupBy("host", "trace").applyInArrow(job, RESULT_SCHEMA).collect()
        done = {
            r["trace"]: TraceReplay(
                r["host"], r["trace"], r["seconds"], r["events"], json.loads(r["rows"]), r["error"]
            )
            for r in rows
        }
        lost = TraceReplay("", "", 0.0, 0, {}, "Spark returned no result for it")
        results = [done.get(t) or replace(lost, host=h, trace_id=t) for t, h in known.items()]
        ok = [r for r in results if r.error is None]
        if ok:
            ds.publish(
                staging, [StagedTrace(r.host, r.trace_id, r.trace_id, REPLAY_TABLES) for r in ok]
            )
        return results
    finally:
        staging.release()


def _trace_files(spark: SparkSession, ds: Dataset, trace_ids: list[str]) -> DataFrame:
    """The Parquet files of every table replay reads, of the given traces: host, trace,
    path and content."""
    from pyspark.sql import functions as F

    dirs = [
        str(path)
        for name, path in ds.table_dirs().items()
        if name in (*INPUT_EVENTS, *PROBE_TABLES, *_SIDE, GENERIC_DIR)
        or path.name.startswith(EVENT_PREFIX)
        if ds.files(name)
    ]
    if not dirs:  # every trace has a manifest row, so only in an empty dataset
        raise ValueError(f"{ds.root}: nothing to replay")
    reader = spark.read.format("binaryFile").option("pathGlobFilter", "*.parquet")
    tables = [
        reader.load(d)
        .where(F.col("trace").isin(trace_ids))
        .select("host", "trace", "path", "content")
        for d in dirs
    ]
    return functools.reduce(lambda a, b: a.unionByName(b), tables)


def _replay_group(files: pa.Table, *, staging: str) -> pa.Table:
    """Replay one trace from its files (runs on an executor) and stage its replay tables."""
    host, trace = files["host"][0].as_py(), files["trace"][0].as_py()
    start = time.perf_counter()
    events = 0
    try:
        tables, gaps, manifest = unpack(files)
        events = sum(df.height for name, df in tables.items() if name != PARENT_EVENTS)
        out = replay_trace(tables, gaps, manifest)
        write_tables(Path(staging) / trace, out)
        rows, error = {k: v.height for k, v in out.items()}, None
    except Exception as e:  # reported per trace by the driver; the other traces still land
        rows, error = {}, f"{type(e).__name__}: {e} [{_where(e)}]"
    return pa.Table.from_pylist(
        [
            {
                "host": host,
                "trace": trace,
                "error": error,
                "seconds": time.perf_counter() - start,
                "events": events,
                "rows": json.dumps(rows),
            }
        ],
        schema=_RESULT_ARROW,
    )


def _where(e: Exception) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def unpack(files: pa.Table) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict]:
    """The tables, gaps and manifest row of one trace from its files (``path``, ``content``),
    as :func:`~rmapscope.replay.store.load_trace` reads them: polars' reader, files in
    path order, the other event tables only as their forking parents' events."""
    parts: dict[str, list[pl.DataFrame]] = {}
    order = sorted(zip(files["path"].to_pylist(), range(files.num_rows), strict=True))
    content = files["content"]
    for path, i in order:
        table = _table_of(path)
        parts.setdefault(table, []).append(pl.read_parquet(io.BytesIO(content[i].as_py())))
    tables: dict[str, pl.DataFrame] = {}
    gaps = pl.DataFrame()
    manifest: dict = {}
    others = []
    wanted = {*INPUT_EVENTS, *PROBE_TABLES, *_SIDE}
    for name, frames in parts.items():
        frame = pl.concat(frames) if len(frames) > 1 else frames[0]
        if name not in wanted:
            others.append(frame.lazy())
        elif name == "gaps":
            gaps = frame
        elif name == "traces":
            manifest = frame.row(0, named=True)
        elif frame.height:
            tables[name] = frame
    tables[PARENT_EVENTS] = parent_events(others, tables.get("sched_process_fork"))
    return tables, gaps, manifest


def _table_of(path: str) -> str:
    """The table a dataset file belongs to (``<table>/host=H/trace=T/<file>``).

    >>> _table_of("file:/d/event=set_migration_pte/host=a/trace=1/part-00000.parquet")
    'set_migration_pte'
    >>> _table_of("file:/d/gaps/host=a/trace=1/part-00000.parquet")
    'gaps'
    """
    return table_of(path.split("/")[-4])
